// Package explain reads error text that a Contrast user pastes — output of the
// Contrast CLI, kubectl events, containerd, Kata or Azure ACI, a Coordinator
// log — and names each error it recognises: the failure mode (a contract value
// from package failure where one exists), what it means, and the concrete next
// step, quoting the values found in the text (hashes, nonces, validator names,
// addresses, paths).
//
//	findings := explain.Explain(pastedText)
//	if len(findings) == 0 {
//		// nothing recognised
//	}
//	explain.WriteText(os.Stdout, findings)
//
// Matching is by structure, not by whole lines: colour codes, escaped quotes,
// gRPC and log prefixes and line breaks inside a message are tolerated.
// Findings come in order of first appearance; repeats of the same error with
// the same values are counted, not listed twice.
package explain

import (
	"bytes"
	"encoding/json"
	"sort"
	"strings"

	"github.com/ccproxy-dev/ccproxy/internal/failure"
)

// Modes of findings that the contract's failure-mode table has no value for.
// They are stable names: scripts may match on them.
const (
	ModeImageVolumeWithoutMount = "image_volume_without_mount"
	ModePolicyBlockedContainer  = "policy_blocked_container"
	ModePolicyBlockedRequest    = "policy_blocked_request"
	ModeContainerdWrongImage    = "containerd_wrong_image"
	ModeRuntimeClassMissing     = "runtime_class_missing"
	ModeRuntimeClassMismatch    = "runtime_class_mismatch"
	ModePodVMOutOfMemory        = "pod_vm_out_of_memory"
	ModeACIPolicyDenied         = "aci_policy_denied"
	ModeValidatorFailed         = "validator_failed"
	ModeCoordinatorProbeEOF     = "coordinator_probe_eof"
	ModePortForwardUnsupported  = "port_forward_unsupported"
)

// Finding is one recognised error.
type Finding struct {
	// Mode names what happened: a contract failure mode when Contract is
	// true, otherwise one of this package's Mode* names.
	Mode     string `json:"mode"`
	Contract bool   `json:"contract"`
	// Alternatives are other modes the same text can stand for; the next
	// steps say how to tell them apart.
	Alternatives []string `json:"alternatives,omitempty"`
	// Summary is one line: what was found, with the key value.
	Summary string `json:"summary"`
	// Excerpt is the recognised part of the (normalised) text.
	Excerpt string `json:"excerpt"`
	// Count is how often the same error with the same values appeared.
	Count     int      `json:"count"`
	Values    Values   `json:"values,omitempty"`
	Meaning   string   `json:"meaning"`
	NextSteps []string `json:"next_steps"`

	offset int
}

// Value is one named value quoted from the text or computed from it.
type Value struct {
	Name  string
	Value string
}

// Values keeps the order in which values were found; it marshals to a JSON
// object so that scripts can read `.values.nonce`.
type Values []Value

// Get returns the value named name, or "".
func (vs Values) Get(name string) string {
	for _, v := range vs {
		if v.Name == name {
			return v.Value
		}
	}
	return ""
}

// MarshalJSON writes the values as one object, in order.
func (vs Values) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, v := range vs {
		if i > 0 {
			b.WriteByte(',')
		}
		k, err := json.Marshal(v.Name)
		if err != nil {
			return nil, err
		}
		val, err := json.Marshal(v.Value)
		if err != nil {
			return nil, err
		}
		b.Write(k)
		b.WriteByte(':')
		b.Write(val)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// UnmarshalJSON reads an object written by MarshalJSON. Key order is kept.
func (vs *Values) UnmarshalJSON(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	if _, err := dec.Token(); err != nil { // '{'
		return err
	}
	var out Values
	for dec.More() {
		tk, err := dec.Token()
		if err != nil {
			return err
		}
		key, _ := tk.(string)
		var val string
		if err := dec.Decode(&val); err != nil {
			return err
		}
		out = append(out, Value{Name: key, Value: val})
	}
	*vs = out
	return nil
}

// maxMatchesPerRule bounds the work per recogniser on huge pastes; past it
// the same error only repeats.
const maxMatchesPerRule = 5000

// Explain returns the errors recognised in text, in order of first appearance.
// It returns nil when nothing is recognised.
func Explain(text string) []Finding {
	s := newScanner(normalize(text))
	for _, r := range rules {
		r(s)
	}
	sort.SliceStable(s.findings, func(i, j int) bool { return s.findings[i].offset < s.findings[j].offset })
	return s.findings
}

// scanner holds the normalised text and what the recognisers found so far.
// Recognisers run in priority order; a specific one claims the span it
// explained, so that a more general one does not explain the same bytes again
// (the "connection refused" inside a kubectl port-forward error, a HOST_DATA
// mismatch inside a validator's error).
type scanner struct {
	text     string
	lines    []int    // offsets in text where a line of the input began
	claimed  []uint64 // one bit per byte of text
	findings []Finding
	index    map[string]int

	coordinatorDone bool
	coordinator     string
}

func newScanner(text string, lines []int) *scanner {
	return &scanner{
		text:    text,
		lines:   lines,
		claimed: make([]uint64, len(text)/64+1),
		index:   map[string]int{},
	}
}

// lineStart is the offset at which the input line holding pos began.
func (s *scanner) lineStart(pos int) int {
	i := sort.SearchInts(s.lines, pos+1) - 1
	if i < 0 {
		return 0
	}
	return s.lines[i]
}

// lineEnd is the offset at which the input line holding pos ends (the
// next line's start, or the end of the text).
func (s *scanner) lineEnd(pos int) int {
	i := sort.SearchInts(s.lines, pos+1)
	if i < len(s.lines) {
		return s.lines[i]
	}
	return len(s.text)
}

// free reports whether no byte of text[start:end] is claimed.
func (s *scanner) free(start, end int) bool {
	for i := start; i < end; i++ {
		w := s.claimed[i/64]
		if w == 0 {
			i |= 63 // skip the rest of this empty word
			continue
		}
		if w&(1<<(uint(i)%64)) != 0 {
			return false
		}
	}
	return true
}

func (s *scanner) claim(start, end int) {
	for i := start; i < end; i++ {
		s.claimed[i/64] |= 1 << (uint(i) % 64)
	}
}

// add records f found at text[start:end], or counts it when the same mode
// with the same values was found before.
func (s *scanner) add(start, end int, f Finding) {
	s.addExcerpt(start, s.text[start:end], f)
}

// addExcerpt is add with the quoted text given explicitly.
func (s *scanner) addExcerpt(start int, quoted string, f Finding) {
	f.Contract = failure.Mode(f.Mode).Known()
	f.offset = start
	f.Excerpt = excerpt(quoted)
	var key strings.Builder
	key.WriteString(f.Mode)
	for _, v := range f.Values {
		if v.Name == "grpc_code" || v.Name == "coordinator" {
			continue // context, not identity
		}
		key.WriteString("\x00" + v.Name + "=" + v.Value)
	}
	if i, ok := s.index[key.String()]; ok {
		s.findings[i].Count++
		return
	}
	f.Count = 1
	s.index[key.String()] = len(s.findings)
	s.findings = append(s.findings, f)
}

// maxExcerpt bounds the quoted part of the text; the values carry what matters.
const maxExcerpt = 320

func excerpt(t string) string {
	t = strings.TrimSpace(t)
	if len(t) <= maxExcerpt {
		return t
	}
	head, tail := t[:maxExcerpt/2], t[len(t)-maxExcerpt/2:]
	head = strings.ToValidUTF8(head, "")
	tail = strings.ToValidUTF8(tail, "")
	return head + " … " + tail
}
