package attest_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/ccproxy-dev/ccproxy/attest"
	"github.com/ccproxy-dev/ccproxy/internal/failure"
)

// edit returns manifest with f applied to its decoded form.
func edit(t *testing.T, manifest []byte, f func(m map[string]any)) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(manifest, &m); err != nil {
		t.Fatal(err)
	}
	f(m)
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func entry(m map[string]any, platform string) map[string]any {
	return m["ReferenceValues"].(map[string]any)[platform].([]any)[0].(map[string]any)
}

const otherHash = "1111111111111111111111111111111111111111111111111111111111111111"

// TestCheckManifestJSON: per era, what the Contrast CLI that wrote the
// manifest refuses before it dials, in its words; and what it accepts
// (ccproxy must not be stricter).
func TestCheckManifestJSON(t *testing.T) {
	a := testAuthority(t)
	newest, legacy := a.ManifestJSON(), a.LegacyManifestJSON()
	oldest := []byte(`{"Policies":{"` + otherHash + `":["coordinator"]},
		"ReferenceValues":{"SNP":{"MinimumTCB":{"BootloaderVersion":3,"TEEVersion":0,"SNPVersion":8,"MicrocodeVersion":115}},
		"TrustedMeasurement":"` + strings.Repeat("ab", 48) + `"},"WorkloadOwnerKeyDigests":null}`)
	cases := []struct {
		name     string
		manifest []byte
		era      string
		// want is the CLI's whole text; "" means the CLI accepts it.
		want string
	}{
		{"newest as generated", newest, attest.EraNewest, ""},
		{"newest, debug guest policy", edit(t, newest, func(m map[string]any) {
			entry(m, "snp")["GuestPolicy"].(map[string]any)["Debug"] = true
		}), attest.EraNewest, "validating manifest: ReferenceValues.snp[0].GuestPolicy.Debug: modifying this field is not permitted"},
		{"newest, migration agent and no SMT", edit(t, newest, func(m map[string]any) {
			p := entry(m, "snp")["GuestPolicy"].(map[string]any)
			p["MigrateMA"], p["SMT"] = true, false
		}), attest.EraNewest, "validating manifest: ReferenceValues.snp[0].GuestPolicy.SMT: modifying this field is not permitted\n" +
			"ReferenceValues.snp[0].GuestPolicy.MigrateMA: modifying this field is not permitted"},
		{"newest, AKS ABI minor 31 allowed", edit(t, newest, func(m map[string]any) {
			entry(m, "snp")["GuestPolicy"].(map[string]any)["ABIMinor"] = 31
		}), attest.EraNewest, ""},
		{"newest, unknown product", edit(t, newest, func(m map[string]any) {
			entry(m, "snp")["ProductName"] = "Turin"
		}), attest.EraNewest, "validating manifest: ReferenceValues.snp[0].ProductName: unknown product name: Turin"},
		{"newest, no coordinator policy", edit(t, newest, func(m map[string]any) {
			m["Policies"] = map[string]any{otherHash: map[string]any{"SANs": []string{"web"}}}
		}), attest.EraNewest, "validating manifest: expected at least 1 policy with role 'coordinator'"},
		{"newest, two coordinator policies", edit(t, newest, func(m map[string]any) {
			m["Policies"].(map[string]any)[otherHash] = map[string]any{"Role": "coordinator"}
		}), attest.EraNewest, ""},
		{"newest, MrSeam still to fill in", edit(t, newest, func(m map[string]any) {
			entry(m, "tdx")["MrSeam"] = ""
		}), attest.EraNewest, "validating manifest: ReferenceValues: Please fill in all reference values for tdx[0]"},
		{"newest, MrSeam to fill in and a bad Xfam", edit(t, newest, func(m map[string]any) {
			e := entry(m, "tdx")
			e["MrSeam"], e["Xfam"] = "", "00"
		}), attest.EraNewest, "validating manifest: ReferenceValues.tdx[0].MrSeam: Please fill in all reference values for invalid length: 0 (expected 96)\n" +
			"ReferenceValues.tdx[0].Xfam: invalid length: 2 (expected 16)"},
		{"newest, unknown role", edit(t, newest, func(m map[string]any) {
			m["Policies"].(map[string]any)[otherHash] = map[string]any{"Role": "admin"}
		}), attest.EraNewest, `validating manifest: Policies["` + otherHash + `"].Role: unknown role: admin`},
		{"ID block as generated", legacy, attest.EraIDBlock, ""},
		{"ID block, two coordinator policies", edit(t, legacy, func(m map[string]any) {
			m["Policies"].(map[string]any)[otherHash] = map[string]any{"Role": "coordinator"}
		}), attest.EraIDBlock, "validating manifest: expected exactly 1 policy with role 'coordinator', got 2"},
		{"ID block, debug guest policy is not its manifest check", edit(t, legacy, func(m map[string]any) {
			entry(m, "snp")["GuestPolicy"].(map[string]any)["Debug"] = true
		}), attest.EraIDBlock, ""},
		{"ID block, TDX without minimum QE SVN", edit(t, legacy, func(m map[string]any) {
			delete(entry(m, "tdx"), "MinimumQeSvn")
		}), attest.EraIDBlock, "validating manifest: ReferenceValues.tdx[0].MinimumQeSvn: field cannot be empty"},
		{"list, empty MrSeam", edit(t, legacy, func(m map[string]any) {
			delete(entry(m, "snp"), "GuestPolicy")
			entry(m, "tdx")["MrSeam"] = ""
		}), attest.EraList, "validating manifest: ReferenceValues.tdx[0].MrSeam: invalid length: 0 (expected 96)"},
		{"list, no reference values", edit(t, legacy, func(m map[string]any) {
			m["ReferenceValues"] = map[string]any{}
		}), attest.EraList, "validating manifest: ReferenceValues: reference values in manifest cannot be empty. Is the chosen platform supported?"},
		{"oldest as written", oldest, attest.EraOldest, ""},
		{"oldest, no bootloader minimum", []byte(strings.Replace(string(oldest), `"BootloaderVersion":3,`, "", 1)), attest.EraOldest,
			"validating manifest: validating reference values: field BootloaderVersion in manifest cannot be empty"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := attest.CheckManifestJSON(tc.manifest)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("CheckManifestJSON = %v, want accepted (the CLI accepts it)", err)
				}
				return
			}
			me := attest.AsManifestError(err)
			if me == nil {
				t.Fatalf("CheckManifestJSON = %v, want the CLI's %q", err, tc.want)
			}
			if me.Error() != tc.want {
				t.Errorf("text\n%s\nwant\n%s", me.Error(), tc.want)
			}
			if me.Era != tc.era {
				t.Errorf("era %q, want %q", me.Era, tc.era)
			}
			if me.Mode() != failure.ManifestInvalid {
				t.Errorf("mode %s", me.Mode())
			}
		})
	}
}

// TestManifestEra: the layout tells the release, and with it where that
// CLI checks the Coordinator policy hash.
func TestManifestEra(t *testing.T) {
	a := testAuthority(t)
	for _, tc := range []struct {
		name        string
		manifest    []byte
		era         string
		policyAfter bool
	}{
		{"newest", a.ManifestJSON(), attest.EraNewest, true},
		{"newest with APEIP", a.SeedManifestJSON(), attest.EraNewest, true},
		{"older (ID block)", a.LegacyManifestJSON(), attest.EraIDBlock, false},
		{"list", edit(t, a.LegacyManifestJSON(attest.PlatformSNP), func(m map[string]any) { delete(entry(m, "snp"), "GuestPolicy") }), attest.EraList, false},
	} {
		m, err := attest.ParseManifest(tc.manifest)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if m.Era != tc.era || m.PolicyAfterValidation != tc.policyAfter {
			t.Errorf("%s: era %q, policy after validation %v; want %q, %v", tc.name, m.Era, m.PolicyAfterValidation, tc.era, tc.policyAfter)
		}
	}
}
