package probe

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"strings"
)

// manifestParts names the top-level keys of a Contrast manifest.json, in the
// order differences are reported. Other keys follow alphabetically.
var manifestParts = []struct{ key, name string }{
	{"Policies", "policies"},
	{"ReferenceValues", "reference values"},
	{"WorkloadOwnerKeyDigests", "workload owner keys"},
	{"WorkloadOwnerPubKeys", "workload owner keys"},
	{"SeedshareOwnerPubKeys", "seed share owner keys"},
}

// maxListed bounds how many entries one difference names.
const maxListed = 4

// diffManifests compares the Coordinator's active manifest with the local
// manifest.json as `contrast verify` does, byte for byte, and when they
// differ names the parts that differ. remote comes from the network: it is
// parsed defensively and never trusted to be JSON. nil means equal.
func diffManifests(local, remote []byte) []string {
	if bytes.Equal(local, remote) {
		return nil
	}
	var l, r map[string]json.RawMessage
	if err := json.Unmarshal(local, &l); err != nil {
		return []string{fmt.Sprintf("manifest.json is not a JSON object (%v); the Coordinator's manifest is %d bytes", err, len(remote))}
	}
	if err := json.Unmarshal(remote, &r); err != nil {
		return []string{fmt.Sprintf("the Coordinator's manifest is not a JSON object (%v)", err)}
	}
	var diffs []string
	seen := map[string]bool{}
	for _, p := range manifestParts {
		seen[p.key] = true
		diffs = append(diffs, diffPart(p.key, p.name, l[p.key], r[p.key])...)
	}
	var rest []string
	for k := range l {
		if !seen[k] {
			rest = append(rest, k)
			seen[k] = true
		}
	}
	for k := range r {
		if !seen[k] {
			rest = append(rest, k)
			seen[k] = true
		}
	}
	sort.Strings(rest)
	for _, k := range rest {
		diffs = append(diffs, diffPart(k, k, l[k], r[k])...)
	}
	if len(diffs) == 0 {
		diffs = []string{"same content but different bytes (formatting or key order); `contrast verify` compares bytes, so use the exact manifest.json that was set"}
	}
	return diffs
}

// diffPart compares one top-level value. Absent values are nil.
func diffPart(key, name string, l, r json.RawMessage) []string {
	lv, lerr := decode(l)
	rv, rerr := decode(r)
	switch {
	case l == nil && r == nil:
		return nil
	case lerr != nil || rerr != nil:
		return []string{fmt.Sprintf("%s (%s) does not parse", name, key)}
	case l == nil:
		return []string{fmt.Sprintf("%s (%s) only in the Coordinator's manifest", name, key)}
	case r == nil:
		return []string{fmt.Sprintf("%s (%s) only in manifest.json", name, key)}
	case reflect.DeepEqual(lv, rv):
		return nil
	}
	switch key {
	case "Policies":
		return diffPolicies(lv, rv)
	case "ReferenceValues":
		return diffReferenceValues(lv, rv)
	}
	if la, ok := lv.([]any); ok {
		if ra, ok := rv.([]any); ok {
			return []string{fmt.Sprintf("%s (%s) differ: %s", name, key, diffList(la, ra))}
		}
	}
	return []string{fmt.Sprintf("%s (%s) differ", name, key)}
}

func decode(raw json.RawMessage) (any, error) {
	if raw == nil {
		return nil, nil
	}
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	var v any
	err := d.Decode(&v)
	return v, err
}

// diffPolicies names policy hashes only on one side and entries that
// differ; a changed Coordinator policy is named as such, since it is also
// what the Coordinator's evidence is checked against.
func diffPolicies(l, r any) []string {
	lm, lok := l.(map[string]any)
	rm, rok := r.(map[string]any)
	if !lok || !rok {
		return []string{"policies (Policies) differ in shape"}
	}
	var out []string
	if lc, rc := coordinatorPolicies(lm), coordinatorPolicies(rm); !reflect.DeepEqual(lc, rc) {
		out = append(out, fmt.Sprintf("the Coordinator policy hash differs: the Coordinator's manifest has %s, manifest.json has %s", listOrNone(rc), listOrNone(lc)))
	}
	onlyR, onlyL, changed := diffKeys(lm, rm)
	if len(onlyR) > 0 {
		out = append(out, fmt.Sprintf("policies only in the Coordinator's manifest: %s", listSome(onlyR)))
	}
	if len(onlyL) > 0 {
		out = append(out, fmt.Sprintf("policies only in manifest.json: %s", listSome(onlyL)))
	}
	if len(changed) > 0 {
		out = append(out, fmt.Sprintf("policy entries that differ (SANs, WorkloadSecretID or Role): %s", listSome(changed)))
	}
	return out
}

func coordinatorPolicies(m map[string]any) []string {
	var out []string
	for k, v := range m {
		if e, ok := v.(map[string]any); ok && e["Role"] == "coordinator" {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

// diffReferenceValues names the platforms whose reference values differ.
func diffReferenceValues(l, r any) []string {
	lm, lok := l.(map[string]any)
	rm, rok := r.(map[string]any)
	if !lok || !rok {
		return []string{"reference values (ReferenceValues) differ in shape"}
	}
	onlyR, onlyL, changed := diffKeys(lm, rm)
	var out []string
	for _, k := range onlyR {
		out = append(out, fmt.Sprintf("reference values for %s only in the Coordinator's manifest", k))
	}
	for _, k := range onlyL {
		out = append(out, fmt.Sprintf("reference values for %s only in manifest.json", k))
	}
	for _, k := range changed {
		la, lok := lm[k].([]any)
		ra, rok := rm[k].([]any)
		if lok && rok {
			out = append(out, fmt.Sprintf("reference values for %s differ: %s", k, diffEntries(la, ra)))
			continue
		}
		out = append(out, fmt.Sprintf("reference values for %s differ", k))
	}
	return out
}

// diffEntries compares two lists of reference-value objects entry by entry
// and names the fields that differ.
func diffEntries(l, r []any) string {
	if len(l) != len(r) {
		return fmt.Sprintf("the Coordinator's manifest has %d entries, manifest.json %d", len(r), len(l))
	}
	var parts []string
	for i := range l {
		lm, lok := l[i].(map[string]any)
		rm, rok := r[i].(map[string]any)
		if !lok || !rok {
			if !reflect.DeepEqual(l[i], r[i]) {
				parts = append(parts, fmt.Sprintf("entry %d", i))
			}
			continue
		}
		onlyR, onlyL, changed := diffKeys(lm, rm)
		fields := append(append(changed, onlyR...), onlyL...)
		sort.Strings(fields)
		if len(fields) > 0 {
			parts = append(parts, fmt.Sprintf("entry %d fields %s", i, listSome(fields)))
		}
	}
	return strings.Join(parts, ", ")
}

// diffKeys returns the keys only in r, only in l, and in both with
// different values, each sorted.
func diffKeys(l, r map[string]any) (onlyR, onlyL, changed []string) {
	for k, rv := range r {
		lv, ok := l[k]
		switch {
		case !ok:
			onlyR = append(onlyR, k)
		case !reflect.DeepEqual(lv, rv):
			changed = append(changed, k)
		}
	}
	for k := range l {
		if _, ok := r[k]; !ok {
			onlyL = append(onlyL, k)
		}
	}
	sort.Strings(onlyR)
	sort.Strings(onlyL)
	sort.Strings(changed)
	return onlyR, onlyL, changed
}

// diffList describes two lists of keys or digests by their elements.
func diffList(l, r []any) string {
	count := func(xs []any) map[string]int {
		m := map[string]int{}
		for _, x := range xs {
			m[fmt.Sprint(x)]++
		}
		return m
	}
	lc, rc := count(l), count(r)
	var onlyR, onlyL []string
	for k, n := range rc {
		if lc[k] < n {
			onlyR = append(onlyR, k)
		}
	}
	for k, n := range lc {
		if rc[k] < n {
			onlyL = append(onlyL, k)
		}
	}
	sort.Strings(onlyR)
	sort.Strings(onlyL)
	var parts []string
	if len(onlyR) > 0 {
		parts = append(parts, "only in the Coordinator's manifest: "+listSome(onlyR))
	}
	if len(onlyL) > 0 {
		parts = append(parts, "only in manifest.json: "+listSome(onlyL))
	}
	if len(parts) == 0 {
		return "same entries in another order"
	}
	return strings.Join(parts, "; ")
}

func listSome(xs []string) string {
	if len(xs) <= maxListed {
		return strings.Join(xs, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(xs[:maxListed], ", "), len(xs)-maxListed)
}

func listOrNone(xs []string) string {
	if len(xs) == 0 {
		return "none"
	}
	return strings.Join(xs, ", ")
}
