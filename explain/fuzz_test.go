package explain

import (
	"bytes"
	"strings"
	"testing"
	"time"
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

// TestExplainHugeInput checks that a large paste — many repeated errors and
// long runs of the characters the patterns look for — is explained in time
// linear in its size.
func TestExplainHugeInput(t *testing.T) {
	var b strings.Builder
	unit := grpcWrap("with AtlsConnectionNonce abcd:  validator tdx-0 failed: validating report data: quote field MR_CONFIG_ID is [1 2 3]. Expect [4 5 6]") + "\n" +
		"dial tcp 10.0.0.1:1313: connect: connection refused\n" +
		"policyDecision< " + strings.Repeat("QUFB", 50) + " >policyDecision\n" +
		`{"decision":"` + strings.Repeat(`\\"`, 20) + "\n"
	for b.Len() < 2<<20 {
		b.WriteString(unit)
	}
	b.WriteString(strings.Repeat("validator ", 20000))
	b.WriteString(strings.Repeat("[1 ", 20000))
	start := time.Now()
	fs := Explain(b.String())
	took := time.Since(start)
	if len(fs) == 0 {
		t.Fatal("nothing recognised in a paste full of errors")
	}
	for _, f := range fs {
		if f.Mode == ModeUpstreamUnreachable {
			t.Fatalf("unexpected mode %s", f.Mode)
		}
	}
	// Generous for a shared 2-core machine; a quadratic path takes minutes.
	if took > 30*time.Second {
		t.Fatalf("explaining %d bytes took %v", b.Len(), took)
	}
	t.Logf("explained %d MiB in %v, %d findings", b.Len()>>20, took, len(fs))
}
