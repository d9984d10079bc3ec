package explain

import (
	regexp "github.com/ccproxy-dev/ccproxy/internal/explain/lazyre"
	"strings"
)

// rules run in this order; earlier ones are more specific and claim what
// they explained (see scanner).
var rules = []func(*scanner){
	ruleManifestValidation,
	ruleValidators,
	ruleBareValidatorCause,
	rulePolicyDecisionBlob,
	rulePolicyDecisionJSON,
	rulePortForward,
	ruleServerHandshakeLog,
	ruleEvidenceFields,
	ruleConnection,
	ruleClockSkew,
	ruleProcessCertificate,
	ruleUserAPI,
	ruleImageVolume,
	ruleBlockedByPolicy,
	ruleCreateContainerInput,
	ruleNoSpace,
	ruleRuntimeClassMissing,
	ruleACIDeniedWithoutBlob,
	ruleRuntimeClassMismatch,
	ruleCoordinatorAPIError,
	ruleServerPreface,
	ruleModeName,
}

// each calls fn with the submatch indexes of every match of re that does
// not overlap a span an earlier rule claimed.
func (s *scanner) each(re finder, fn func(m []int)) {
	for _, m := range re.FindAllStringSubmatchIndex(s.text, maxMatchesPerRule) {
		if s.free(m[0], m[1]) {
			fn(m)
		}
	}
}

// group returns submatch i of m, or "" when it did not take part.
func (s *scanner) group(m []int, i int) string {
	if 2*i+1 >= len(m) || m[2*i] < 0 {
		return ""
	}
	return s.text[m[2*i]:m[2*i+1]]
}

// lastBefore returns submatch 1 of the last match of re that ends within
// window bytes before pos.
func (s *scanner) lastBefore(re *regexp.Regexp, pos, window int) string {
	from := max(0, pos-window)
	ms := re.FindAllStringSubmatch(s.text[from:pos], -1)
	if len(ms) == 0 {
		return ""
	}
	m := ms[len(ms)-1]
	if len(m) < 2 {
		return m[0]
	}
	return m[1]
}

var (
	grpcCodeRe = pattern(`rpc error: code = ([A-Za-z]+)`)
	// The address a user passed to the CLI (`contrast set -c 1.2.3.4:1313`),
	// when the paste includes the command line.
	coordinatorFlagRe = near(regexp.MustCompile(`(?:^|[\s$])(?:-c|--coordinator)(?:=|\s)\s*["']?([A-Za-z0-9._\-\[\]:{}$]+:[0-9]{1,5})`), "-c", 2, 300)
	podRe             = regexp.MustCompile(`(?i)(?:\bPod/|\bpod/|\bpods? ")([a-z0-9](?:[a-z0-9.-]{0,251}[a-z0-9])?)`)
)

// grpcCode is the gRPC status code wrapping the error at pos, if any.
func (s *scanner) grpcCode(pos int) string { return s.lastBefore(grpcCodeRe, pos, 400) }

// pod is the pod an event at pos is about: kubectl events print `Pod/<name>`
// earlier on the same line. Earlier lines are other events.
func (s *scanner) pod(pos int) string {
	return s.lastBefore(podRe, pos, min(pos-s.lineStart(pos), 2000))
}

// coordinatorAddr is the Coordinator address found anywhere in the text (a
// `-c HOST:PORT` flag, or the address a dial failed on), or "".
func (s *scanner) coordinatorAddr() string {
	if !s.coordinatorDone {
		s.coordinatorDone = true
		if ms := coordinatorFlagRe.FindAllStringSubmatchIndex(s.text, 1); len(ms) > 0 {
			s.coordinator = s.group(ms[0], 1)
		} else if m := dialAddrRe.FindStringSubmatch(s.text); m != nil {
			s.coordinator = m[1]
		}
	}
	return s.coordinator
}

// addrOrPlaceholder is the address to put into a suggested command.
func (s *scanner) addrOrPlaceholder() string {
	if a := s.coordinatorAddr(); a != "" {
		return a
	}
	return "<coordinator>:1313"
}

// connValues are the context values every handshake finding carries.
func (s *scanner) connValues(pos int, vs ...Value) Values {
	out := Values(vs)
	if c := s.grpcCode(pos); c != "" {
		out = append(out, Value{"grpc_code", c})
	}
	if a := s.coordinatorAddr(); a != "" && out.Get("address") == "" {
		out = append(out, Value{"coordinator", a})
	}
	return out
}

// finder is what the recognisers match with: a *regexp.Regexp, or an
// anchored one.
type finder interface {
	FindAllStringSubmatchIndex(s string, n int) [][]int
}

// anchored runs a pattern only around the occurrences of a word every match
// contains. Go's regexp skips quickly to a literal prefix, but a pattern that
// starts with a class or an alternation is run at every byte; on a paste of
// megabytes that costs seconds per pattern.
type anchored struct {
	re     *regexp.Regexp
	anchor string
	// before and after bound how far a match reaches around its anchor.
	before, after int
}

func near(re *regexp.Regexp, anchor string, before, after int) anchored {
	return anchored{re: re, anchor: anchor, before: before, after: after}
}

// FindAllStringSubmatchIndex returns the matches of a.re in s whose anchor
// occurrence lies in s, in order, at most n (all when n < 0).
func (a anchored) FindAllStringSubmatchIndex(s string, n int) [][]int {
	var out [][]int
	lastEnd := 0
	for i := 0; n < 0 || len(out) < n; {
		k := strings.Index(s[i:], a.anchor)
		if k < 0 {
			break
		}
		k += i
		from := max(k-a.before, lastEnd)
		to := min(len(s), k+len(a.anchor)+a.after)
		// Anchors within the window extend it, so that windows never
		// overlap by more than a.before and the work stays linear.
		for to < len(s) {
			j := strings.Index(s[k+len(a.anchor):to], a.anchor)
			if j < 0 {
				break
			}
			k += len(a.anchor) + j
			to = min(len(s), k+len(a.anchor)+a.after)
		}
		for _, m := range a.re.FindAllStringSubmatchIndex(s[from:to], -1) {
			for x := range m {
				if m[x] >= 0 {
					m[x] += from
				}
			}
			if m[0] < lastEnd {
				continue
			}
			out = append(out, m)
			lastEnd = m[1]
			if n >= 0 && len(out) >= n {
				break
			}
		}
		i = to
	}
	return out
}
