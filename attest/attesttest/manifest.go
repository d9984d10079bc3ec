package attesttest

import (
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"

	"github.com/google/go-sev-guest/abi"
)

// ManifestJSON returns a manifest.json in the newest Contrast layout
// (ReferenceValues.snp / .tdx lists, Policies entries with a Role, Rtmrs)
// whose reference values accept this authority's default evidence: its
// coordinator policy is DefaultPolicyHash, its measurement / MRTD is
// DefaultMeasurement, its allowed chip ID and PIID are the authority's.
// platforms selects "snp" and/or "tdx"; none means both.
func (a *Authority) ManifestJSON(platforms ...string) []byte {
	refs := map[string]any{}
	if want(platforms, platformSNP) {
		refs["snp"] = []any{map[string]any{
			"Platform":                "Metal-QEMU-SNP",
			"ProductName":             snpProductLine,
			"TrustedMeasurement":      hexOf(DefaultMeasurement()),
			"MinimumTCB":              snpTCBJSON(),
			"GuestPolicy":             abi.SnpPolicy{SMT: true},
			"PlatformInfo":            abi.SnpPlatformInfo{SMTEnabled: true},
			"MinimumMitigationVector": 0,
			"AllowedChipIDs":          []string{hexOf(a.snp.chipID)},
			"CPUs":                    2,
		}}
	}
	if want(platforms, platformTDX) {
		refs["tdx"] = []any{map[string]any{
			"Platform":                   "Metal-QEMU-TDX",
			"MinTCBEvaluationDataNumber": 0,
			"MrTd":                       hexOf(DefaultMeasurement()),
			"MrSeam":                     hex.EncodeToString(mrSeam()),
			"Rtmrs":                      rtmrsJSON(),
			"Xfam":                       hex.EncodeToString(binary.LittleEndian.AppendUint64(nil, tdxXfam)),
			"AllowedPIIDs":               []string{hexOf(a.tdx.piid)},
			"MemoryIntegrity":            false,
			"SMTDisabled":                false,
			"StaticPlatform":             false,
			"CPUs":                       2,
		}}
	}
	return manifestJSON(map[string]any{
		"Policies":              coordinatorPolicy(),
		"ReferenceValues":       refs,
		"WorkloadOwnerPubKeys":  []string{},
		"SeedshareOwnerPubKeys": []string{},
	})
}

// SeedManifestJSON returns ManifestJSON's reference values in the layout of
// the newest Contrast releases, whose SNP measurement depends on the vCPU
// count: TrustedMeasurement is the 1-vCPU seed (DefaultMeasurement) and
// APEIP the AP reset EIP; the CLI tries 1 to 220 vCPUs. Evidence with VCPUs
// set matches it.
func (a *Authority) SeedManifestJSON(platforms ...string) []byte {
	var m map[string]any
	if err := json.Unmarshal(a.ManifestJSON(platforms...), &m); err != nil {
		panic("attesttest: own manifest: " + err.Error())
	}
	if snp, ok := m["ReferenceValues"].(map[string]any)["snp"].([]any); ok {
		for _, e := range snp {
			e.(map[string]any)["APEIP"] = fmt.Sprintf("%08x", SeedAPEIP)
		}
	}
	return manifestJSON(m)
}

// LegacyManifestJSON returns the same reference values in the older layout
// Contrast shipped before: TDX with the misspelled Rtrms, explicit
// TdAttributes and the minimum QE / PCE / TEE TCB SVNs; SNP without
// PlatformInfo, mitigation vector or chip IDs; WorkloadOwnerKeyDigests.
// TCBLow TDX evidence is detectable only against this layout.
func (a *Authority) LegacyManifestJSON(platforms ...string) []byte {
	refs := map[string]any{}
	if want(platforms, platformSNP) {
		refs["snp"] = []any{map[string]any{
			"MinimumTCB":         snpTCBJSON(),
			"ProductName":        snpProductLine,
			"TrustedMeasurement": hexOf(DefaultMeasurement()),
			"GuestPolicy":        abi.SnpPolicy{SMT: true},
		}}
	}
	if want(platforms, platformTDX) {
		refs["tdx"] = []any{map[string]any{
			"MrTd":             hexOf(DefaultMeasurement()),
			"Rtrms":            rtmrsJSON(),
			"MinimumQeSvn":     tdxQeSvn,
			"MinimumPceSvn":    tdxPceSvn,
			"MinimumTeeTcbSvn": hexOf(tdxMinimumTeeTcbSvn),
			"MrSeam":           hex.EncodeToString(mrSeam()),
			"TdAttributes":     hex.EncodeToString(binary.LittleEndian.AppendUint64(nil, tdxTdAttributes)),
			"Xfam":             hex.EncodeToString(binary.LittleEndian.AppendUint64(nil, tdxXfam)),
		}}
	}
	return manifestJSON(map[string]any{
		"Policies":                coordinatorPolicy(),
		"ReferenceValues":         refs,
		"WorkloadOwnerKeyDigests": []string{},
		"SeedshareOwnerPubKeys":   []string{},
	})
}

func want(platforms []string, p string) bool {
	if len(platforms) == 0 {
		return true
	}
	for _, q := range platforms {
		if q == p {
			return true
		}
	}
	return false
}

func hexOf[T ~[16]byte | ~[32]byte | ~[48]byte | ~[64]byte](b T) string {
	s := make([]byte, 0, len(b))
	for i := 0; i < len(b); i++ {
		s = append(s, b[i])
	}
	return hex.EncodeToString(s)
}

func snpTCBJSON() map[string]uint8 {
	return map[string]uint8{
		"BootloaderVersion": snpMinimumTCB.BlSpl,
		"TEEVersion":        snpMinimumTCB.TeeSpl,
		"SNPVersion":        snpMinimumTCB.SnpSpl,
		"MicrocodeVersion":  snpMinimumTCB.UcodeSpl,
	}
}

func rtmrsJSON() []string {
	out := make([]string, 4)
	for i := range out {
		out[i] = hex.EncodeToString(rtmr(i))
	}
	return out
}

func coordinatorPolicy() map[string]any {
	return map[string]any{
		hexOf(DefaultPolicyHash()): map[string]any{
			"SANs":             []string{"coordinator", "*"},
			"WorkloadSecretID": "coordinator",
			"Role":             "coordinator",
		},
	}
}

func manifestJSON(m map[string]any) []byte {
	// Contrast writes its manifest indented; the values here always marshal.
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		panic("attesttest: marshaling manifest: " + err.Error())
	}
	return b
}
