package explain

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
)

// Azure Container Instances' confidential containers report a denial as
//
//	... denied due to policy: policyDecision< <base64 JSON> >policyDecision
//
// where the JSON is the policy engine's decision:
//
//	{"decision":"deny","input":{...},"reason":{"errors":[...]},"truncated":["input"]}
var (
	policyBlobRe = near(pattern(`(?:(?:container creation|[a-z]+) denied due to policy: )?policyDecision< ([A-Za-z0-9+/=_\- ]*?) >policyDecision`), "policyDecision<", 80, maxBlob)
	// The decision already decoded and pasted as JSON.
	policyJSONRe = near(pattern(`\{ "decision" : "`), `"decision"`, 20, 20)
)

// maxDecisionJSON bounds how much text one pasted decision may span.
const maxDecisionJSON = 64 << 10

// maxBlob bounds the base64 decoded per decision; real ones are a few KiB.
const maxBlob = 1 << 20

type policyDecision struct {
	Decision  string          `json:"decision"`
	Input     map[string]any  `json:"input"`
	Reason    json.RawMessage `json:"reason"`
	Truncated []string        `json:"truncated"`
}

func rulePolicyDecisionBlob(s *scanner) {
	s.each(policyBlobRe, func(m []int) {
		s.claim(m[0], m[1])
		blob := strings.ReplaceAll(s.group(m, 1), " ", "")
		var f Finding
		if raw, ok := decodeBase64(blob); ok {
			f = decisionFinding(raw)
		} else {
			f = undecodableFinding(blob)
		}
		if pod := s.pod(m[0]); pod != "" {
			f.Values = append(f.Values, Value{"pod", pod})
		}
		s.add(m[0], m[1], f)
	})
}

func rulePolicyDecisionJSON(s *scanner) {
	s.each(policyJSONRe, func(m []int) {
		dec := json.NewDecoder(strings.NewReader(s.text[m[0]:min(len(s.text), m[0]+maxDecisionJSON)]))
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return
		}
		end := m[0] + int(dec.InputOffset())
		if !s.free(m[0], end) {
			return
		}
		s.claim(m[0], end)
		s.add(m[0], end, decisionFinding(raw))
	})
}

func decodeBase64(blob string) ([]byte, bool) {
	if len(blob) == 0 || len(blob) > maxBlob {
		return nil, false
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(blob); err == nil {
			return b, true
		}
	}
	return nil, false
}

func undecodableFinding(blob string) Finding {
	return Finding{
		Mode:    ModeACIPolicyDenied,
		Summary: "the confidential container's policy denied the request (decision blob not decodable)",
		Values:  Values{{"blob", excerpt(blob)}},
		Meaning: "The text between policyDecision< and >policyDecision should be base64-encoded JSON, but it " +
			"does not decode; it was probably cut when it was copied.",
		NextSteps: []string{"Copy the whole event again (`kubectl describe pod <pod>`) and paste it into `ccproxy explain`."},
	}
}

// decisionFinding explains a decoded policy decision.
func decisionFinding(raw []byte) Finding {
	var d policyDecision
	if err := json.Unmarshal(raw, &d); err != nil {
		return Finding{
			Mode:    ModeACIPolicyDenied,
			Summary: "the confidential container's policy denied the request (decision is not JSON)",
			Values:  Values{{"decoded", excerpt(string(raw))}},
			Meaning: "The policy decision decoded from base64 but is not the JSON object the policy engine writes.",
			NextSteps: []string{
				"Read the decoded text above; copy the whole event again if it looks cut.",
			},
		}
	}
	reasons := reasonList(d.Reason)
	vs := Values{{"decision", orNone(d.Decision)}}
	if rule, ok := d.Input["rule"].(string); ok {
		vs = append(vs, Value{"rule", rule})
	}
	if len(reasons) > 0 {
		vs = append(vs, Value{"reasons", strings.Join(reasons, "; ")})
	}
	for _, k := range sortedKeys(d.Input) {
		if k == "rule" {
			continue
		}
		if v, ok := d.Input[k].(string); ok && v != "" {
			vs = append(vs, Value{"input." + k, v})
		}
	}
	if len(d.Truncated) > 0 {
		vs = append(vs, Value{"truncated", strings.Join(d.Truncated, ", ")})
	}
	var compact bytes.Buffer
	if json.Compact(&compact, raw) == nil {
		vs = append(vs, Value{"decoded", excerpt(compact.String())})
	}

	f := Finding{
		Mode:    ModeACIPolicyDenied,
		Summary: fmt.Sprintf("the confidential container policy says %q: %s", orNone(d.Decision), orNone(strings.Join(reasons, "; "))),
		Values:  vs,
		Meaning: "The policy engine inside the confidential container group compared the host's request with the " +
			"CCE policy the group was deployed with and refused it.",
	}
	for _, r := range reasons {
		meaning, steps := explainReason(r, d.Input)
		f.Meaning += " " + meaning
		f.NextSteps = append(f.NextSteps, steps...)
	}
	if len(d.Truncated) > 0 {
		f.Meaning += " Parts of the decision (" + strings.Join(d.Truncated, ", ") + ") were left out because the " +
			"message has a size limit; the reasons are complete."
	}
	if len(f.NextSteps) == 0 {
		f.NextSteps = []string{
			"Compare the container group's definition (command, environment, mounts, images) with the CCE policy, regenerate the policy with `az confcom acipolicygen` from the exact definition you deploy, and redeploy.",
		}
	}
	f.NextSteps = dedupeStrings(f.NextSteps)
	return f
}

// reasonList reads reason.errors ([]string); other shapes are kept as text.
func reasonList(raw json.RawMessage) []string {
	if len(raw) == 0 {
		return nil
	}
	var r struct {
		Errors []string `json:"errors"`
	}
	if json.Unmarshal(raw, &r) == nil && len(r.Errors) > 0 {
		return r.Errors
	}
	var str string
	if json.Unmarshal(raw, &str) == nil && str != "" {
		return []string{str}
	}
	var b bytes.Buffer
	if json.Compact(&b, raw) == nil && b.Len() > 2 && b.String() != "null" {
		return []string{b.String()}
	}
	return nil
}

const regenerateStep = "Regenerate the CCE policy from exactly the container group you deploy (`az confcom acipolicygen`) and redeploy."

// explainReason says what one of the policy engine's reasons means.
func explainReason(reason string, input map[string]any) (string, []string) {
	str := func(k string) string {
		v, _ := input[k].(string)
		return v
	}
	switch {
	case reason == "deviceHash not found":
		hash, target := str("deviceHash"), str("target")
		m := "deviceHash not found: the host tried to mount an image layer"
		if target != "" {
			m += " at " + target
		}
		m += " whose dm-verity root hash"
		if hash != "" {
			m += " (" + hash + ")"
		}
		m += " is not among the layers the policy lists for any container. The image pulled now is not the " +
			"image the policy was generated from — usually a tag (such as latest) moved to a new image after " +
			"the policy was made."
		return m, []string{
			"Pin every image by digest (`image@sha256:...`) or use tags that are never overwritten, in a registry you control.",
			regenerateStep,
		}
	case reason == "invalid command":
		return "invalid command: the container's command and arguments differ from the ones the policy allows.", []string{
			"Compare command and args of the container (and the image's entrypoint) with the policy; " + regenerateStep,
		}
	case strings.HasPrefix(reason, "invalid env list"):
		vars := strings.TrimSpace(strings.TrimPrefix(reason, "invalid env list:"))
		return "invalid env list: the environment variables " + orNone(vars) + " are not allowed by the policy's environment rules.", []string{
			"Add the variables to the container definition before generating the policy, or stop setting them at deploy time; " + regenerateStep,
		}
	case strings.HasPrefix(reason, "invalid mount list"):
		mounts := strings.TrimSpace(strings.TrimPrefix(reason, "invalid mount list:"))
		return "invalid mount list: the mounts " + orNone(mounts) + " are not in the policy.", []string{
			"Declare the volumes in the container group definition the policy is generated from; " + regenerateStep,
		}
	case reason == "no matching containers for overlay":
		return "no matching containers for overlay: the image layers being assembled match no container in the policy — the image differs from the one the policy was generated for.", []string{
			"Pin images by digest; " + regenerateStep,
		}
	case reason == "missing required environment variable":
		return "missing required environment variable: the policy requires a variable the container does not set.", []string{
			"Set the variable in the container definition. " + regenerateStep,
		}
	case reason == "invalid working directory", reason == "invalid user", reason == "capabilities don't match",
		reason == "privileged escalation not allowed", reason == "invalid noNewPrivileges":
		return reason + ": the container's " + strings.TrimPrefix(strings.TrimPrefix(reason, "invalid "), "privileged ") +
			" differs from what the policy allows.", []string{regenerateStep}
	}
	return reason + ": reason given by the policy engine.", []string{regenerateStep}
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func dedupeStrings(in []string) []string {
	seen := map[string]bool{}
	out := in[:0]
	for _, s := range in {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}
