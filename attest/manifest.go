package attest

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/ccproxy-dev/ccproxy/attest/snpmeasure"
	"github.com/google/go-sev-guest/abi"
)

// Manifest holds what ccproxy needs from a Contrast manifest.json: the
// policies (for the Coordinator policy hash) and the reference values.
// ParseManifest reads every layout Contrast has written:
//
//   - newest: ReferenceValues {"snp": [...], "tdx": [...]}, Policies values
//     {SANs, WorkloadSecretID, Role}, TDX Rtmrs, MinTCBEvaluationDataNumber,
//     AllowedPIIDs, SNP PlatformInfo, AllowedChipIDs, APEIP;
//   - older: TDX Rtrms (sic), MinimumQeSvn, MinimumPceSvn, MinimumTeeTcbSvn,
//     TdAttributes; SNP without PlatformInfo;
//   - oldest: ReferenceValues {"SNP": {"MinimumTCB": ...},
//     "TrustedMeasurement": ...}, Policies values a list of names.
type Manifest struct {
	// Raw is the file as read (probe compares it byte for byte).
	Raw []byte
	// Policies maps lowercase hex policy hashes to their entries.
	Policies map[string]PolicyEntry
	SNP      []SNPReference
	TDX      []TDXReference
	// Era is the release line that wrote the manifest (EraOldest, EraList,
	// EraIDBlock, EraNewest), told by its layout.
	Era string
	// PolicyAfterValidation: the CLI that writes this layout (it has
	// WorkloadOwnerPubKeys) checks the Coordinator policy hash after a
	// validator passed, against every Coordinator policy of the manifest
	// (internal/manifest/validators.go coordinatorValidator), and takes a
	// TDX quote's policy hash from MR_CONFIG_ID's first 32 bytes only.
	PolicyAfterValidation bool
}

// PolicyEntry is one entry of the manifest's Policies.
type PolicyEntry struct {
	SANs             []string
	WorkloadSecretID string
	// Role is "coordinator" for the Coordinator's own policy.
	Role string
}

// RoleCoordinator marks the Coordinator's policy in Policies.
const RoleCoordinator = "coordinator"

// SNPTCB is a minimum SEV-SNP TCB.
type SNPTCB struct {
	Bootloader, TEE, SNP, Microcode uint8
}

// SNPReference is one SEV-SNP reference-value entry.
type SNPReference struct {
	// Index is the entry's position in ReferenceValues.snp.
	Index int
	// Platform is Contrast's platform name (newest layout), e.g. Metal-QEMU-SNP.
	Platform string
	// ProductName is Milan or Genoa; empty in the oldest layout (any).
	ProductName        string
	TrustedMeasurement []byte // 48 bytes
	MinimumTCB         SNPTCB
	GuestPolicy        abi.SnpPolicy
	// RequireIDBlock: the manifest names its GuestPolicy, and every Contrast
	// release that wrote one also requires the report's ID_KEY_DIGEST to be
	// the ID key derived from the measurement and that policy
	// (internal/idblock); older manifests had neither.
	RequireIDBlock bool
	// PlatformInfo is the maximum allowed PLATFORM_INFO; nil when the
	// manifest predates it (not checked).
	PlatformInfo            *abi.SnpPlatformInfo
	MinimumMitigationVector uint64
	AllowedChipIDs          [][]byte // 64 bytes each; empty allows any
	// APEIP, when set, makes TrustedMeasurement the 1-vCPU seed of a
	// measurement that depends on the vCPU count: the CLI extends it by AP
	// VMSA pages with this reset EIP (big endian in the manifest) and the
	// product's CPU signature, for 1 to 220 vCPUs.
	APEIP []byte
	// CPUSignature is the CPUID signature of the product's vCPU type
	// (EPYC-Milan, EPYC-Genoa); set with APEIP.
	CPUSignature uint32
}

// TDXReference is one TDX reference-value entry.
type TDXReference struct {
	Index    int
	Platform string
	MrTd     []byte    // 48 bytes
	MrSeam   []byte    // 48 bytes; nil not checked
	Rtmrs    [4][]byte // 48 bytes each
	Xfam     []byte    // 8 bytes
	// TdAttributes is set by older manifests; nil means Contrast's fixed
	// value (SEPT_VE_DISABLE only).
	TdAttributes []byte
	// Older manifests: minimum SVNs (nil / empty not checked).
	MinimumQeSvn     *uint16
	MinimumPceSvn    *uint16
	MinimumTeeTcbSvn []byte // 16 bytes
	// Newest manifests.
	AllowedPIIDs               [][]byte // 16 bytes each; empty allows any
	MinTCBEvaluationDataNumber int
	MemoryIntegrity            bool
	SMTDisabled                bool
	StaticPlatform             bool
}

// LoadManifest reads and parses a manifest.json.
func LoadManifest(path string) (*Manifest, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading manifest: %w", err)
	}
	// The CLI's own validation comes first: what it refuses, it refuses
	// in its words, whatever ccproxy's parser would say.
	if err := CheckManifestJSON(data); err != nil {
		return nil, fmt.Errorf("manifest %s: %w", path, err)
	}
	m, err := ParseManifest(data)
	if err != nil {
		return nil, fmt.Errorf("manifest %s: %w", path, err)
	}
	return m, nil
}

type rawTCB struct {
	BootloaderVersion, TEEVersion, SNPVersion, MicrocodeVersion *float64
}

type rawSNP struct {
	Platform                string
	ProductName             string
	TrustedMeasurement      string
	MinimumTCB              *rawTCB
	GuestPolicy             *abi.SnpPolicy
	PlatformInfo            *abi.SnpPlatformInfo
	MinimumMitigationVector uint64
	AllowedChipIDs          []string
	APEIP                   string
}

type rawTDX struct {
	Platform                   string
	MrTd                       string
	MrSeam                     string
	Rtmrs                      []string
	Rtrms                      []string // sic: older Contrast spelling
	Xfam                       string
	TdAttributes               *string
	MinimumQeSvn               *uint16
	MinimumPceSvn              *uint16
	MinimumTeeTcbSvn           string
	AllowedPIIDs               []string
	MinTCBEvaluationDataNumber int
	MemoryIntegrity            bool
	SMTDisabled                bool
	StaticPlatform             bool
}

// ParseManifest parses a manifest.json. It fails when the data is not JSON,
// a value is malformed, or there are no reference values at all.
func ParseManifest(data []byte) (*Manifest, error) {
	var top struct {
		Policies        map[string]json.RawMessage
		ReferenceValues json.RawMessage
	}
	if err := json.Unmarshal(data, &top); err != nil {
		return nil, fmt.Errorf("not a JSON manifest: %w", err)
	}
	m := &Manifest{Raw: bytes.Clone(data), Policies: map[string]PolicyEntry{}}
	var layout rawManifest
	if err := json.Unmarshal(data, &layout); err == nil {
		m.Era = layout.era()
		m.PolicyAfterValidation = layout.WorkloadOwnerPubKeys != nil
	}
	var errs []error
	for hash, raw := range top.Policies {
		if err := checkHex(hash, 32); err != nil {
			errs = append(errs, fmt.Errorf("Policies[%q]: %w", hash, err))
			continue
		}
		var entry PolicyEntry
		if b := bytes.TrimSpace(raw); len(b) > 0 && b[0] == '[' {
			// Oldest layout: a list of names, no role.
			if err := json.Unmarshal(b, &entry.SANs); err != nil {
				errs = append(errs, fmt.Errorf("Policies[%q]: %w", hash, err))
			}
		} else if err := json.Unmarshal(raw, &entry); err != nil {
			errs = append(errs, fmt.Errorf("Policies[%q]: %w", hash, err))
		}
		m.Policies[strings.ToLower(hash)] = entry
	}
	if err := m.parseReferenceValues(top.ReferenceValues); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if len(m.SNP)+len(m.TDX) == 0 {
		return nil, errors.New("the manifest has no reference values (ReferenceValues has no snp or tdx entries)")
	}
	return m, nil
}

// refKeys splits ReferenceValues into its members; JSON keys are matched
// case-insensitively, as encoding/json (and so Contrast) does.
func refKeys(raw json.RawMessage) (map[string]json.RawMessage, error) {
	if len(bytes.TrimSpace(raw)) == 0 || string(bytes.TrimSpace(raw)) == "null" {
		return nil, nil
	}
	var members map[string]json.RawMessage
	if err := json.Unmarshal(raw, &members); err != nil {
		return nil, fmt.Errorf("ReferenceValues: %w", err)
	}
	out := map[string]json.RawMessage{}
	for k, v := range members {
		out[strings.ToLower(k)] = v
	}
	return out, nil
}

func (m *Manifest) parseReferenceValues(raw json.RawMessage) error {
	members, err := refKeys(raw)
	if err != nil {
		return err
	}
	var errs []error
	if snp := bytes.TrimSpace(members["snp"]); len(snp) > 0 && string(snp) != "null" {
		var entries []rawSNP
		if snp[0] == '{' {
			// Oldest layout: one SNP object with only MinimumTCB, the
			// measurement beside it, and a fixed guest policy.
			var legacy rawSNP
			if err := json.Unmarshal(snp, &legacy); err != nil {
				return fmt.Errorf("ReferenceValues.SNP: %w", err)
			}
			var measurement string
			if tm := members["trustedmeasurement"]; tm != nil {
				if err := json.Unmarshal(tm, &measurement); err != nil {
					return fmt.Errorf("ReferenceValues.TrustedMeasurement: %w", err)
				}
			}
			legacy.TrustedMeasurement = measurement
			entries = []rawSNP{legacy}
		} else if err := json.Unmarshal(snp, &entries); err != nil {
			return fmt.Errorf("ReferenceValues.snp: %w", err)
		}
		for i, e := range entries {
			ref, err := e.parse(i)
			if err != nil {
				errs = append(errs, fmt.Errorf("ReferenceValues.snp[%d].%w", i, err))
				continue
			}
			m.SNP = append(m.SNP, ref)
		}
	}
	if tdx := bytes.TrimSpace(members["tdx"]); len(tdx) > 0 && string(tdx) != "null" {
		var entries []rawTDX
		if err := json.Unmarshal(tdx, &entries); err != nil {
			return fmt.Errorf("ReferenceValues.tdx: %w", err)
		}
		for i, e := range entries {
			ref, err := e.parse(i)
			if err != nil {
				errs = append(errs, fmt.Errorf("ReferenceValues.tdx[%d].%w", i, err))
				continue
			}
			m.TDX = append(m.TDX, ref)
		}
	}
	return errors.Join(errs...)
}

func (e rawSNP) parse(i int) (SNPReference, error) {
	ref := SNPReference{
		Index:                   i,
		Platform:                e.Platform,
		ProductName:             e.ProductName,
		PlatformInfo:            e.PlatformInfo,
		MinimumMitigationVector: e.MinimumMitigationVector,
		// Before the manifest carried a guest policy, Contrast required
		// exactly this one.
		GuestPolicy: abi.SnpPolicy{SMT: true},
	}
	if e.GuestPolicy != nil {
		ref.GuestPolicy = *e.GuestPolicy
		ref.RequireIDBlock = true
	}
	switch e.ProductName {
	case "", "Milan", "Genoa":
	default:
		return ref, fmt.Errorf("ProductName: unknown product %q (want Milan or Genoa)", e.ProductName)
	}
	var err error
	if ref.TrustedMeasurement, err = decodeHex(e.TrustedMeasurement, abi.MeasurementSize); err != nil {
		return ref, fmt.Errorf("TrustedMeasurement: %w", err)
	}
	if e.MinimumTCB == nil {
		return ref, errors.New("MinimumTCB: missing")
	}
	for _, f := range []struct {
		name string
		v    *float64
		out  *uint8
	}{
		{"BootloaderVersion", e.MinimumTCB.BootloaderVersion, &ref.MinimumTCB.Bootloader},
		{"TEEVersion", e.MinimumTCB.TEEVersion, &ref.MinimumTCB.TEE},
		{"SNPVersion", e.MinimumTCB.SNPVersion, &ref.MinimumTCB.SNP},
		{"MicrocodeVersion", e.MinimumTCB.MicrocodeVersion, &ref.MinimumTCB.Microcode},
	} {
		if f.v == nil {
			return ref, fmt.Errorf("MinimumTCB.%s: missing", f.name)
		}
		if *f.v < 0 || *f.v > 255 || *f.v != float64(uint8(*f.v)) {
			return ref, fmt.Errorf("MinimumTCB.%s: %v is not an SVN (0-255)", f.name, *f.v)
		}
		*f.out = uint8(*f.v)
	}
	for j, id := range e.AllowedChipIDs {
		b, err := decodeHex(id, abi.ChipIDSize)
		if err != nil {
			return ref, fmt.Errorf("AllowedChipIDs[%d]: %w", j, err)
		}
		ref.AllowedChipIDs = append(ref.AllowedChipIDs, b)
	}
	if e.APEIP != "" {
		if ref.APEIP, err = decodeHex(e.APEIP, 4); err != nil {
			return ref, fmt.Errorf("APEIP: %w", err)
		}
		// The CLI refuses such an entry without a product it knows the
		// vCPU type of.
		if ref.CPUSignature, err = snpmeasure.ProductSignature(e.ProductName); err != nil {
			return ref, fmt.Errorf("APEIP: %w", err)
		}
	}
	return ref, nil
}

func (e rawTDX) parse(i int) (TDXReference, error) {
	ref := TDXReference{
		Index:                      i,
		Platform:                   e.Platform,
		MinimumQeSvn:               e.MinimumQeSvn,
		MinimumPceSvn:              e.MinimumPceSvn,
		MinTCBEvaluationDataNumber: e.MinTCBEvaluationDataNumber,
		MemoryIntegrity:            e.MemoryIntegrity,
		SMTDisabled:                e.SMTDisabled,
		StaticPlatform:             e.StaticPlatform,
	}
	var err error
	if ref.MrTd, err = decodeHex(e.MrTd, 48); err != nil {
		return ref, fmt.Errorf("MrTd: %w", err)
	}
	if e.MrSeam != "" {
		if ref.MrSeam, err = decodeHex(e.MrSeam, 48); err != nil {
			return ref, fmt.Errorf("MrSeam: %w", err)
		}
	}
	if ref.Xfam, err = decodeHex(e.Xfam, 8); err != nil {
		return ref, fmt.Errorf("Xfam: %w", err)
	}
	rtmrs, name := e.Rtmrs, "Rtmrs"
	if len(rtmrs) == 0 {
		rtmrs, name = e.Rtrms, "Rtrms"
	}
	if len(rtmrs) != 4 {
		return ref, fmt.Errorf("Rtmrs: %d values, want 4 (also read as Rtrms)", len(rtmrs))
	}
	for j, r := range rtmrs {
		if ref.Rtmrs[j], err = decodeHex(r, 48); err != nil {
			return ref, fmt.Errorf("%s[%d]: %w", name, j, err)
		}
	}
	if e.TdAttributes != nil {
		if ref.TdAttributes, err = decodeHex(*e.TdAttributes, 8); err != nil {
			return ref, fmt.Errorf("TdAttributes: %w", err)
		}
	}
	if e.MinimumTeeTcbSvn != "" {
		if ref.MinimumTeeTcbSvn, err = decodeHex(e.MinimumTeeTcbSvn, 16); err != nil {
			return ref, fmt.Errorf("MinimumTeeTcbSvn: %w", err)
		}
	}
	for j, id := range e.AllowedPIIDs {
		b, err := decodeHex(id, 16)
		if err != nil {
			return ref, fmt.Errorf("AllowedPIIDs[%d]: %w", j, err)
		}
		ref.AllowedPIIDs = append(ref.AllowedPIIDs, b)
	}
	return ref, nil
}

func checkHex(s string, n int) error {
	_, err := decodeHex(s, n)
	return err
}

func decodeHex(s string, n int) ([]byte, error) {
	if len(s) != 2*n {
		return nil, fmt.Errorf("%d hex digits, want %d", len(s), 2*n)
	}
	b, err := hex.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("not hex: %w", err)
	}
	return b, nil
}

// CoordinatorPolicyHashes returns the hashes of the policies with Role
// coordinator, sorted. The oldest manifests name no roles: then it is empty
// and the hash must be given explicitly.
func (m *Manifest) CoordinatorPolicyHashes() [][]byte {
	if m == nil {
		return nil
	}
	var keys []string
	for k, e := range m.Policies {
		if e.Role == RoleCoordinator {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	out := make([][]byte, 0, len(keys))
	for _, k := range keys {
		b, _ := hex.DecodeString(k) // checked by ParseManifest
		out = append(out, b)
	}
	return out
}

// isInsecurePlatform reports whether a newest-layout platform name is one of
// Contrast's insecure (no hardware) platforms: their entries are skipped by
// the SNP and TDX validators and admit insecure evidence instead.
func isInsecurePlatform(name string) bool {
	return strings.Contains(strings.ToLower(name), "insecure")
}

// snpRefs returns the entries the SNP validators use.
func (m *Manifest) snpRefs() []SNPReference {
	var out []SNPReference
	for _, r := range m.SNP {
		if !isInsecurePlatform(r.Platform) {
			out = append(out, r)
		}
	}
	return out
}

func (m *Manifest) tdxRefs() []TDXReference {
	var out []TDXReference
	for _, r := range m.TDX {
		if !isInsecurePlatform(r.Platform) {
			out = append(out, r)
		}
	}
	return out
}

func (m *Manifest) allowsInsecure() bool {
	for _, r := range m.SNP {
		if isInsecurePlatform(r.Platform) {
			return true
		}
	}
	for _, r := range m.TDX {
		if isInsecurePlatform(r.Platform) {
			return true
		}
	}
	return false
}

// platforms names the platforms the manifest has validators for.
func (m *Manifest) platforms() []string {
	var out []string
	if len(m.snpRefs()) > 0 {
		out = append(out, PlatformSNP)
	}
	if len(m.tdxRefs()) > 0 {
		out = append(out, PlatformTDX)
	}
	if m.allowsInsecure() {
		out = append(out, PlatformInsecure)
	}
	return out
}
