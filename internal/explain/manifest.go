package explain

import (
	"strconv"
	"strings"

	"github.com/ccproxy-dev/ccproxy/internal/failure"
)

// The Contrast CLI validates manifest.json before it dials (`contrast set`,
// `contrast verify`, the SDK: internal/manifest Manifest.Validate and the
// reference values' Validate) and stops with
//
//	Error: validating manifest: ReferenceValues.snp[0].GuestPolicy.Debug: modifying this field is not permitted
//	ReferenceValues.snp[0].ProductName: unknown product name: Turin
//
// one line per failed field, or one of the texts below without a path. The
// reasons are recognised with the prefix, and the distinctive ones also
// without it (a paste that lost the first line).
var (
	manifestValidationRe = pattern(`validating manifest: `)
	manifestReasonRes    = []finder{
		pattern(`expected exactly 1 policy with role 'coordinator', got [0-9]+`),
		pattern(`expected at least 1 policy with role 'coordinator'`),
		pattern(`(?:[A-Za-z0-9_.\[\]"]+: )?modifying this field is not permitted`),
		pattern(`(?:[A-Za-z0-9_.\[\]"]+: )?unknown product name: [A-Za-z0-9]*`),
		pattern(`(?:[A-Za-z0-9_.\[\]"]+: )?Please fill in all reference values for [A-Za-z0-9_.\[\]]+`),
		pattern(`reference values in manifest cannot be empty\. Is the chosen platform supported\?`),
		pattern(`manifest must not mix secure and insecure platforms`),
		pattern(`field [A-Za-z]+ in manifest cannot be empty`),
		// json.Unmarshal into the CLI's types failed (an SVN above 255, a
		// string where a number belongs, ...): refused before dialing too.
		pattern(`failed to unmarshal manifest: [^"\n]*`),
	}
	// A validation line: a JSON path, then the reason.
	manifestLineRe = pattern(`^(?:Policies\[|ReferenceValues|WorkloadOwner|SeedshareOwner)[^\n]*`)
)

func manifestFinding(reason string) Finding {
	return Finding{
		Mode:    string(failure.ManifestInvalid),
		Summary: "the CLI refused manifest.json before connecting: " + reason,
		Values:  Values{{"reason", reason}},
		Meaning: "The Contrast CLI checks the manifest itself before it dials the Coordinator (guest-policy flags that " +
			"may not be changed, known product names, reference values that must be filled in, the Coordinator " +
			"policy count its release requires). This manifest fails that check, so no connection was made: the " +
			"Coordinator, the network and the evidence are not involved.",
		NextSteps: []string{
			"Fix the named field in manifest.json, or regenerate it with `contrast generate` of the CLI release you run.",
			"`ccproxy attest --manifest manifest.json <certificate>` and `ccproxy probe --manifest manifest.json` refuse the same manifest with the same words.",
		},
	}
}

// ruleManifestValidation explains the CLI's manifest validation errors.
func ruleManifestValidation(s *scanner) {
	s.each(manifestValidationRe, func(m []int) {
		// The reason runs to the end of the line; the following lines
		// that start with a manifest path belong to the same error.
		end := s.lineEnd(m[1])
		for end < len(s.text) {
			next := end
			for next < len(s.text) && (s.text[next] == '\n' || s.text[next] == '\r') {
				next++
			}
			if next >= len(s.text) || !manifestLineRe.MatchString(s.text[next:s.lineEnd(next)]) {
				break
			}
			end = s.lineEnd(next)
		}
		reason := strings.TrimSpace(s.text[m[1]:s.lineEnd(m[1])])
		if reason == "" {
			return
		}
		s.claim(m[0], end)
		f := manifestFinding(reason)
		if lines := strings.Count(strings.TrimSpace(s.text[m[1]:end]), "\n"); lines > 0 {
			f.Values = append(f.Values, Value{"more_reasons", strconv.Itoa(lines)})
		}
		s.add(m[0], end, f)
	})
	for _, re := range manifestReasonRes {
		s.each(re, func(m []int) {
			s.claim(m[0], m[1])
			s.add(m[0], m[1], manifestFinding(s.text[m[0]:m[1]]))
		})
	}
}
