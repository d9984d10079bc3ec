package explain

import (
	"bytes"
	"strings"
	"testing"

	"github.com/ccproxy-dev/ccproxy/internal/failure"
)

func FuzzExplain(f *testing.F) {
	seeds := []string{
		grpcWrap("EOF"),
		grpcWrap("remote error: tls: internal error"),
		grpcWrap("with AtlsConnectionNonce 00ff:  validator snp-0-GENOA failed: validating report claims: report field HOST_DATA is 00. Expect 11"),
		"quote field MR_CONFIG_ID is [1 2 3]. Expect [4 5 6]",
		"policyDecision< eyJkZWNpc2lvbiI6ImRlbnkifQ== >policyDecision",
		`{"decision":"deny","input":{"rule":"x"},"reason":{"errors":["invalid command"]}}`,
		"x509: certificate has expired or is not yet valid: current time 2024-01-01T00:00:00Z is after 2023-12-31T00:00:00Z",
		slogWrap(`The following volumes declared in image config don't have corresponding Kubernetes mounts: ["/a"]`),
		"allow_create_container_input {\"io.kubernetes.cri.image-name\":\"x\"}",
		"\\\\\\\"\\u00zz\\x1",
		"\x1b]0;title\x07\x1b[",
		"validator  failed: validator x failed:\"",
		"validator snp-0-GENOA failed: sub-validator 3: measurement does not match any vCPU count from 1 to 220\nsub-validator 4: chip ID ab not in allowed chip IDs",
		"sub-validator 0: validator x failed: sub-validator 1:",
		"wrong policy hash for Coordinator: got 00, want [11 22,33]",
		"Error: getting manifests: rpc error: code = Unimplemented desc = unknown service x\nrpc error: code = Internal desc = ",
		"report ID key not trusted: ",
		"",
	}
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		fs := Explain(text)
		for _, fd := range fs {
			if fd.Mode == "" || fd.Summary == "" || fd.Meaning == "" || len(fd.NextSteps) == 0 || fd.Count < 1 {
				t.Fatalf("incomplete finding %+v for %q", fd, text)
			}
		}
		var b bytes.Buffer
		if err := WriteText(&b, fs); err != nil {
			t.Fatal(err)
		}
		if err := WriteJSON(&b, fs); err != nil {
			t.Fatal(err)
		}
	})
}

// hugePaste is a large paste: many repeated errors and long runs of the
// characters the patterns look for.
func hugePaste(size int) string {
	var b strings.Builder
	unit := grpcWrap("with AtlsConnectionNonce abcd:  validator tdx-0 failed: validating report data: quote field MR_CONFIG_ID is [1 2 3]. Expect [4 5 6]") + "\n" +
		"dial tcp 10.0.0.1:1313: connect: connection refused\n" +
		"policyDecision< " + strings.Repeat("QUFB", 50) + " >policyDecision\n" +
		`{"decision":"` + strings.Repeat(`\\"`, 20) + "\n"
	for b.Len() < size {
		b.WriteString(unit)
	}
	b.WriteString(strings.Repeat("validator ", size/100))
	b.WriteString(strings.Repeat("[1 ", size/100))
	return b.String()
}

// TestExplainHugeInput checks that a large paste is explained, each error
// once with its count. How the time grows with the size is measured by
// BenchmarkExplainHugeInput (make bench), not asserted here.
func TestExplainHugeInput(t *testing.T) {
	in := hugePaste(256 << 10)
	fs := Explain(in)
	if len(fs) == 0 {
		t.Fatal("nothing recognised in a paste full of errors")
	}
	for _, f := range fs {
		if f.Mode == string(failure.UpstreamUnreachable) {
			t.Fatalf("unexpected mode %s", f.Mode)
		}
	}
}

// BenchmarkExplainHugeInput reports the cost per byte of a 2 MiB paste; a
// quadratic path shows as a per-byte cost that grows with -benchtime.
func BenchmarkExplainHugeInput(b *testing.B) {
	in := hugePaste(2 << 20)
	b.SetBytes(int64(len(in)))
	for b.Loop() {
		Explain(in)
	}
}
