package main

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

func TestExplainCommand(t *testing.T) {
	cases := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"load balancer EOF", []string{"explain", `Error: getting manifests: rpc error: code = Unavailable desc = connection error: desc = "transport: authentication handshake failed: EOF"`}, 0, "lb_closed_early"},
		{"internal error names both causes", []string{"explain", "remote error: tls: internal error"}, 0, "coordinator_version_mismatch"},
		{"unknown text", []string{"explain", "the weather is fine"}, 1, ""},
		{"bad output", []string{"explain", "--output", "yaml", "EOF"}, 2, "--output"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out, stderr, code := run(t, nil, c.args...)
			if code != c.code {
				t.Fatalf("exit %d, want %d\n%s%s", code, c.code, out, stderr)
			}
			if !strings.Contains(out+stderr, c.want) {
				t.Errorf("output lacks %q:\n%s%s", c.want, out, stderr)
			}
		})
	}
}

func TestExplainReadsStdin(t *testing.T) {
	cmd := exec.Command(binary, "explain", "--output", "json")
	cmd.Stdin = strings.NewReader("level=ERROR msg=\"x509: certificate has expired or is not yet valid: current time 2026-01-02T10:00:00Z is before 2026-01-02T11:00:00Z\"\n")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("explain: %v", err)
	}
	if !strings.Contains(string(out), `"clock_skew"`) {
		t.Errorf("stdin log line not named clock_skew:\n%s", out)
	}
}

func TestAnalyzeCommandErrors(t *testing.T) {
	dir := t.TempDir()
	bad := dir + "/bad.jsonl"
	os.WriteFile(bad, []byte("{not json\n"), 0o644)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"analyze", dir + "/missing.jsonl"}, "missing.jsonl"},
		{[]string{"analyze", "--mode", "not_a_mode", bad}, "--mode"},
		{[]string{"analyze", "--since", "yesterday", bad}, "--since"},
	} {
		_, stderr, code := run(t, nil, c.args...)
		if code != 2 || !strings.Contains(stderr, c.want) {
			t.Errorf("%v: exit %d, stderr %q; want 2 naming %q", c.args, code, stderr, c.want)
		}
	}
}
