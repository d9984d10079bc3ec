package probe

import (
	"encoding/json"
	"strings"
	"testing"
)

const (
	coordHash = "ced5af631b62f9605a6350ffa9b1905025fea87585691780be5ad9394a096e52"
	otherHash = "1111111111111111111111111111111111111111111111111111111111111111"
)

// manifestDoc builds a manifest.json from a base, with edits applied.
func manifestDoc(t testing.TB, edit func(m map[string]any)) []byte {
	t.Helper()
	m := map[string]any{
		"Policies": map[string]any{
			coordHash: map[string]any{"SANs": []any{"coordinator"}, "WorkloadSecretID": "coordinator", "Role": "coordinator"},
		},
		"ReferenceValues": map[string]any{
			"snp": []any{map[string]any{"ProductName": "Milan", "TrustedMeasurement": "aa", "MinimumTCB": map[string]any{"SNPVersion": 8}}},
		},
		"WorkloadOwnerPubKeys":  []any{"key-a"},
		"SeedshareOwnerPubKeys": []any{},
	}
	if edit != nil {
		edit(m)
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDiffManifests(t *testing.T) {
	base := manifestDoc(t, nil)
	tests := []struct {
		name   string
		remote []byte
		want   []string // substrings, one per difference, in order
	}{
		{name: "equal", remote: base},
		{
			name: "extra policy",
			remote: manifestDoc(t, func(m map[string]any) {
				m["Policies"].(map[string]any)[otherHash] = map[string]any{"SANs": []any{"web"}}
			}),
			want: []string{"policies only in the Coordinator's manifest: " + otherHash},
		},
		{
			name: "coordinator policy replaced",
			remote: manifestDoc(t, func(m map[string]any) {
				m["Policies"] = map[string]any{otherHash: map[string]any{"SANs": []any{"coordinator"}, "Role": "coordinator"}}
			}),
			want: []string{
				"the Coordinator policy hash differs: the Coordinator's manifest has " + otherHash + ", manifest.json has " + coordHash,
				"policies only in the Coordinator's manifest: " + otherHash,
				"policies only in manifest.json: " + coordHash,
			},
		},
		{
			name: "policy entry changed",
			remote: manifestDoc(t, func(m map[string]any) {
				m["Policies"].(map[string]any)[coordHash].(map[string]any)["SANs"] = []any{"coordinator", "*"}
			}),
			want: []string{"policy entries that differ (SANs, WorkloadSecretID or Role): " + coordHash},
		},
		{
			name: "measurement changed",
			remote: manifestDoc(t, func(m map[string]any) {
				m["ReferenceValues"].(map[string]any)["snp"].([]any)[0].(map[string]any)["TrustedMeasurement"] = "bb"
			}),
			want: []string{"reference values for snp differ: entry 0 fields TrustedMeasurement"},
		},
		{
			name: "platform added",
			remote: manifestDoc(t, func(m map[string]any) {
				m["ReferenceValues"].(map[string]any)["tdx"] = []any{}
			}),
			want: []string{"reference values for tdx only in the Coordinator's manifest"},
		},
		{
			name: "second entry",
			remote: manifestDoc(t, func(m map[string]any) {
				rv := m["ReferenceValues"].(map[string]any)
				rv["snp"] = append(rv["snp"].([]any), map[string]any{})
			}),
			want: []string{"reference values for snp differ: the Coordinator's manifest has 2 entries, manifest.json 1"},
		},
		{
			name:   "owner key",
			remote: manifestDoc(t, func(m map[string]any) { m["WorkloadOwnerPubKeys"] = []any{"key-b"} }),
			want:   []string{"workload owner keys (WorkloadOwnerPubKeys) differ: only in the Coordinator's manifest: key-b; only in manifest.json: key-a"},
		},
		{
			name:   "older layout key",
			remote: manifestDoc(t, func(m map[string]any) { m["WorkloadOwnerKeyDigests"] = []any{} }),
			want:   []string{"workload owner keys (WorkloadOwnerKeyDigests) only in the Coordinator's manifest"},
		},
		{
			name:   "unknown key",
			remote: manifestDoc(t, func(m map[string]any) { m["Zeta"] = 1; delete(m, "SeedshareOwnerPubKeys") }),
			want:   []string{"seed share owner keys (SeedshareOwnerPubKeys) only in manifest.json", "Zeta (Zeta) only in the Coordinator's manifest"},
		},
		{
			name:   "formatting only",
			remote: []byte(strings.ReplaceAll(string(base), "\n", "")),
			want:   []string{"same content but different bytes"},
		},
		{name: "not JSON", remote: []byte("\x00\x01"), want: []string{"the Coordinator's manifest is not a JSON object"}},
		{name: "JSON but not an object", remote: []byte(`[1,2]`), want: []string{"the Coordinator's manifest is not a JSON object"}},
		{name: "policies not an object", remote: manifestDoc(t, func(m map[string]any) { m["Policies"] = []any{} }), want: []string{"policies (Policies) differ in shape"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := diffManifests(base, tc.remote)
			if len(got) != len(tc.want) {
				t.Fatalf("differences %q, want %d: %q", got, len(tc.want), tc.want)
			}
			for i := range got {
				if !strings.Contains(got[i], tc.want[i]) {
					t.Errorf("difference %d = %q, want %q", i, got[i], tc.want[i])
				}
			}
		})
	}
}

func TestDiffManifestsListsAreBounded(t *testing.T) {
	remote := manifestDoc(t, func(m map[string]any) {
		p := m["Policies"].(map[string]any)
		for _, c := range "abcdef" {
			p[strings.Repeat(string(c), 64)] = map[string]any{}
		}
	})
	got := diffManifests(manifestDoc(t, nil), remote)
	if len(got) != 1 || !strings.HasSuffix(got[0], "and 2 more") {
		t.Fatalf("differences %q", got)
	}
}

// FuzzDiffManifests: the Coordinator's manifest is untrusted bytes. The
// diff must not panic, must call equal bytes equal and anything else
// different.
func FuzzDiffManifests(f *testing.F) {
	base := manifestDoc(f, nil)
	f.Add(base)
	f.Add(manifestDoc(f, func(m map[string]any) { m["Policies"] = "x" }))
	f.Add(manifestDoc(f, func(m map[string]any) { m["ReferenceValues"] = map[string]any{"snp": []any{1, "x", nil}} }))
	f.Add([]byte(`{"Policies":{"a":{"Role":1}},"ReferenceValues":{"snp":{}}}`))
	f.Add([]byte(`{"WorkloadOwnerPubKeys":[[],{},1e400]}`))
	f.Add([]byte(`null`))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, remote []byte) {
		got := diffManifests(base, remote)
		if equal := string(remote) == string(base); equal != (len(got) == 0) {
			t.Fatalf("equal %v but differences %q", equal, got)
		}
		for _, d := range got {
			if d == "" {
				t.Fatal("empty difference")
			}
		}
	})
}
