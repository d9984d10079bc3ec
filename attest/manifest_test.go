package attest_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ccproxy-dev/ccproxy/attest"
	"github.com/ccproxy-dev/ccproxy/attest/attesttest"
)

func TestParseManifestLayouts(t *testing.T) {
	a := testAuthority(t)
	dm, p := attesttest.DefaultMeasurement(), attesttest.DefaultPolicyHash()

	t.Run("newest", func(t *testing.T) {
		data := a.ManifestJSON()
		m := mustManifest(t, data)
		if !bytes.Equal(m.Raw, data) {
			t.Error("Raw is not the input")
		}
		if len(m.SNP) != 1 || len(m.TDX) != 1 {
			t.Fatalf("%d SNP and %d TDX entries, want 1 and 1", len(m.SNP), len(m.TDX))
		}
		s := m.SNP[0]
		if s.ProductName != "Milan" || !bytes.Equal(s.TrustedMeasurement, dm[:]) || s.Platform != "Metal-QEMU-SNP" {
			t.Errorf("SNP entry %+v", s)
		}
		if s.MinimumTCB != (attest.SNPTCB{Bootloader: 3, TEE: 0, SNP: 8, Microcode: 115}) {
			t.Errorf("MinimumTCB %+v", s.MinimumTCB)
		}
		if !s.GuestPolicy.SMT || s.GuestPolicy.Debug || s.PlatformInfo == nil || !s.PlatformInfo.SMTEnabled {
			t.Errorf("GuestPolicy %+v PlatformInfo %+v", s.GuestPolicy, s.PlatformInfo)
		}
		chip := a.ChipID()
		if len(s.AllowedChipIDs) != 1 || !bytes.Equal(s.AllowedChipIDs[0], chip[:]) {
			t.Errorf("AllowedChipIDs %x", s.AllowedChipIDs)
		}
		x := m.TDX[0]
		if !bytes.Equal(x.MrTd, dm[:]) || x.Rtmrs[3] == nil || x.TdAttributes != nil || x.MinimumQeSvn != nil {
			t.Errorf("TDX entry %+v", x)
		}
		piid := a.PIID()
		if len(x.AllowedPIIDs) != 1 || !bytes.Equal(x.AllowedPIIDs[0], piid[:]) {
			t.Errorf("AllowedPIIDs %x", x.AllowedPIIDs)
		}
		if got := m.CoordinatorPolicyHashes(); len(got) != 1 || !bytes.Equal(got[0], p[:]) {
			t.Errorf("CoordinatorPolicyHashes = %x", got)
		}
	})

	t.Run("legacy", func(t *testing.T) {
		data := a.LegacyManifestJSON()
		if !bytes.Contains(data, []byte(`"Rtrms"`)) {
			t.Fatal("legacy manifest does not use the Rtrms spelling")
		}
		m := mustManifest(t, data)
		x := m.TDX[0]
		if x.Rtmrs[0] == nil || x.Rtmrs[3] == nil {
			t.Errorf("Rtrms not read: %x", x.Rtmrs)
		}
		if x.MinimumQeSvn == nil || *x.MinimumQeSvn != 8 || x.MinimumPceSvn == nil || *x.MinimumPceSvn != 13 {
			t.Errorf("minimum SVNs %v %v", x.MinimumQeSvn, x.MinimumPceSvn)
		}
		if len(x.MinimumTeeTcbSvn) != 16 || len(x.TdAttributes) != 8 {
			t.Errorf("MinimumTeeTcbSvn %x TdAttributes %x", x.MinimumTeeTcbSvn, x.TdAttributes)
		}
		if m.SNP[0].PlatformInfo != nil {
			t.Error("legacy SNP entry got a PlatformInfo")
		}
	})

	t.Run("oldest", func(t *testing.T) {
		m := mustManifest(t, []byte(`{
			"Policies": {"`+hexOf(p[:])+`": ["coordinator", "*"]},
			"ReferenceValues": {"SNP": {"MinimumTCB": {"BootloaderVersion": 1, "TEEVersion": 2, "SNPVersion": 3, "MicrocodeVersion": 4}},
				"TrustedMeasurement": "`+hexOf(dm[:])+`"}}`))
		if len(m.SNP) != 1 || !bytes.Equal(m.SNP[0].TrustedMeasurement, dm[:]) || m.SNP[0].ProductName != "" {
			t.Fatalf("SNP entries %+v", m.SNP)
		}
		// Contrast required exactly this policy before manifests named one.
		if !m.SNP[0].GuestPolicy.SMT || m.SNP[0].GuestPolicy.Debug {
			t.Errorf("GuestPolicy %+v", m.SNP[0].GuestPolicy)
		}
		if e := m.Policies[hexOf(p[:])]; len(e.SANs) != 2 || e.Role != "" {
			t.Errorf("policy entry %+v", e)
		}
	})
}

func TestCoordinatorPolicyHashes(t *testing.T) {
	m := mustManifest(t, []byte(`{
		"Policies": {
			"bb00000000000000000000000000000000000000000000000000000000000000": {"Role": "coordinator"},
			"aa00000000000000000000000000000000000000000000000000000000000000": {"Role": "coordinator"},
			"cc00000000000000000000000000000000000000000000000000000000000000": {"SANs": ["web"]}
		},
		"ReferenceValues": {"snp": [{"TrustedMeasurement": "`+strings.Repeat("00", 48)+`",
			"MinimumTCB": {"BootloaderVersion": 0, "TEEVersion": 0, "SNPVersion": 0, "MicrocodeVersion": 0}}]}}`))
	got := m.CoordinatorPolicyHashes()
	if len(got) != 2 || got[0][0] != 0xaa || got[1][0] != 0xbb {
		t.Errorf("CoordinatorPolicyHashes = %x, want aa.. then bb..", got)
	}
	var nilManifest *attest.Manifest
	if nilManifest.CoordinatorPolicyHashes() != nil {
		t.Error("nil manifest has policy hashes")
	}
}

func TestParseManifestErrors(t *testing.T) {
	tcb := `"MinimumTCB": {"BootloaderVersion": 0, "TEEVersion": 0, "SNPVersion": 0, "MicrocodeVersion": 0}`
	m48 := strings.Repeat("ab", 48)
	snp := func(fields string) string {
		return `{"ReferenceValues": {"snp": [{` + fields + `}]}}`
	}
	tdx := func(fields string) string {
		return `{"ReferenceValues": {"tdx": [{` + fields + `}]}}`
	}
	rtmrs := `["` + m48 + `","` + m48 + `","` + m48 + `","` + m48 + `"]`
	cases := []struct {
		name, json, want string
	}{
		{"not JSON", `manifest`, "not a JSON manifest"},
		{"no reference values", `{"Policies": {}}`, "no reference values"},
		{"empty lists", `{"ReferenceValues": {"snp": [], "tdx": []}}`, "no reference values"},
		{"bad policy hash", `{"Policies": {"xyz": {}}, "ReferenceValues": {"snp": []}}`, `Policies["xyz"]`},
		{"short measurement", snp(`"TrustedMeasurement": "abcd", ` + tcb), "snp[0].TrustedMeasurement: 4 hex digits, want 96"},
		{"not hex", snp(`"TrustedMeasurement": "` + strings.Repeat("zz", 48) + `", ` + tcb), "snp[0].TrustedMeasurement: not hex"},
		{"missing TCB", snp(`"TrustedMeasurement": "` + m48 + `"`), "snp[0].MinimumTCB: missing"},
		{"missing TCB part", snp(`"TrustedMeasurement": "` + m48 + `", "MinimumTCB": {"TEEVersion": 0, "SNPVersion": 0, "MicrocodeVersion": 0}`), "MinimumTCB.BootloaderVersion: missing"},
		{"SVN out of range", snp(`"TrustedMeasurement": "` + m48 + `", "MinimumTCB": {"BootloaderVersion": 256, "TEEVersion": 0, "SNPVersion": 0, "MicrocodeVersion": 0}`), "not an SVN"},
		{"unknown product", snp(`"ProductName": "Rome", "TrustedMeasurement": "` + m48 + `", ` + tcb), "unknown product"},
		{"bad chip ID", snp(`"TrustedMeasurement": "` + m48 + `", ` + tcb + `, "AllowedChipIDs": ["00"]`), "AllowedChipIDs[0]"},
		{"three RTMRs", tdx(`"MrTd": "` + m48 + `", "Xfam": "0000000000000000", "Rtmrs": ["` + m48 + `","` + m48 + `","` + m48 + `"]`), "Rtmrs: 3 values"},
		{"bad Rtrms", tdx(`"MrTd": "` + m48 + `", "Xfam": "0000000000000000", "Rtrms": ["` + m48 + `","` + m48 + `","` + m48 + `","00"]`), "Rtrms[3]"},
		{"bad MrTd", tdx(`"MrTd": "00", "Xfam": "0000000000000000", "Rtmrs": ` + rtmrs), "tdx[0].MrTd"},
		{"bad Xfam", tdx(`"MrTd": "` + m48 + `", "Xfam": "00", "Rtmrs": ` + rtmrs), "tdx[0].Xfam"},
		{"snp not a list", `{"ReferenceValues": {"snp": "x"}}`, "ReferenceValues.snp"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := attest.ParseManifest([]byte(tc.json))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("ParseManifest error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestLoadManifest(t *testing.T) {
	a := testAuthority(t)
	dir := t.TempDir()
	good := filepath.Join(dir, "manifest.json")
	if err := os.WriteFile(good, a.ManifestJSON(), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := attest.LoadManifest(good); err != nil {
		t.Errorf("LoadManifest(good) = %v", err)
	}
	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	// The Contrast CLI refuses {} before ccproxy's parser looks at it, and
	// its words are what LoadManifest reports.
	if _, err := attest.LoadManifest(bad); err == nil || !strings.Contains(err.Error(), bad) || attest.AsManifestError(err) == nil ||
		!strings.Contains(err.Error(), "validating manifest: expected exactly 1 policy with role 'coordinator', got 0") {
		t.Errorf("LoadManifest(bad) = %v, want the path and the CLI's cause", err)
	}
	notJSON := filepath.Join(dir, "notjson.json")
	if err := os.WriteFile(notJSON, []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := attest.LoadManifest(notJSON); err == nil || attest.AsManifestError(err) != nil || !strings.Contains(err.Error(), "not a JSON manifest") {
		t.Errorf("LoadManifest(not JSON) = %v, want ccproxy's syntax error", err)
	}
	if _, err := attest.LoadManifest(filepath.Join(dir, "missing.json")); err == nil || !strings.Contains(err.Error(), "reading manifest") {
		t.Errorf("LoadManifest(missing) = %v", err)
	}
}
