package demo

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ccproxy-dev/ccproxy/internal/failure"
)

// TestServiceIsUnavailable is Contrast's retry predicate on the errors the
// CLI sees (internal/grpc/retry's tests, newest version).
func TestServiceIsUnavailable(t *testing.T) {
	handshake := func(cause string) error {
		return status.Error(codes.Unavailable, `connection error: desc = "transport: authentication handshake failed: `+cause+`"`)
	}
	tests := []struct {
		err  error
		want bool
	}{
		{handshake("EOF"), true},
		{handshake("context deadline exceeded"), true},
		{fmt.Errorf("setting manifest: %w", handshake("EOF")), true},
		{handshake("remote error: tls: internal error"), false},
		{handshake("read tcp 127.0.0.1:5->127.0.0.1:1313: read: connection reset by peer"), false},
		{handshake("with AtlsConnectionNonce ab: validator snp-0 failed: ..."), false},
		{status.Error(codes.Unavailable, `connection error: desc = "transport: Error while dialing: dial tcp 127.0.0.1:1313: connect: connection refused"`), true},
		{status.Error(codes.DeadlineExceeded, "context deadline exceeded"), false},
		{status.Error(codes.FailedPrecondition, "no manifest configured"), false},
		{errors.New("EOF"), false},
	}
	for _, tt := range tests {
		if got := ServiceIsUnavailable(tt.err); got != tt.want {
			t.Errorf("ServiceIsUnavailable(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}

func TestRunText(t *testing.T) {
	lb, it, ab := failure.LBClosedEarly, failure.IssuerTimeout, failure.ClientAborted
	tests := []struct {
		atts    []Attempt
		text    string
		outcome failure.Mode
	}{
		{[]Attempt{{Number: 1, Mode: failure.OK}}, "1 attempt: ok", failure.OK},
		{[]Attempt{{Number: 1, Mode: lb}, {Number: 2, Linked: true, Mode: lb}, {Number: 3, Linked: true, Mode: lb}, {Number: 4, Linked: true, Mode: it}},
			"4 attempts: lb_closed_early ×3, then issuer_timeout", it},
		{[]Attempt{{Number: 1, Mode: lb}, {Number: 2, Linked: true, Mode: ab}}, "2 attempts: lb_closed_early, then client_aborted", lb},
		{[]Attempt{{Number: 1, Mode: lb}, {Number: 1, Mode: it}}, "2 runs: 1 attempt: lb_closed_early; 1 attempt: issuer_timeout", it},
		{[]Attempt{{Number: 1}}, "1 attempt: ?", ""},
		{nil, "", ""},
	}
	for _, tt := range tests {
		if got := RunText(tt.atts); got != tt.text {
			t.Errorf("RunText(%v) = %q, want %q", tt.atts, got, tt.text)
		}
		if got := runOutcome(tt.atts); got != tt.outcome {
			t.Errorf("runOutcome(%v) = %q, want %q", tt.atts, got, tt.outcome)
		}
	}
}

func TestCheckRun(t *testing.T) {
	lb, it := failure.LBClosedEarly, failure.IssuerTimeout
	want := "lb_closed_early ×2, then issuer_timeout"
	good := []Attempt{{Number: 1, Mode: lb}, {Number: 2, Linked: true, Mode: lb}, {Number: 3, Linked: true, Mode: it}}
	if why := checkRun(good, want, true); why != "" {
		t.Errorf("a good run: %s", why)
	}
	split := []Attempt{{Number: 1, Mode: lb}, {Number: 2, Linked: true, Mode: lb}, {Number: 1, Mode: it}}
	if why := checkRun(split, want, true); !strings.Contains(why, "want one run") {
		t.Errorf("a split run: %q", why)
	}
	unlinked := []Attempt{{Number: 1, Mode: lb}, {Number: 2, Mode: lb}, {Number: 3, Mode: it}}
	if why := checkRun(unlinked, want, true); !strings.Contains(why, "no link") {
		t.Errorf("an unlinked run: %q", why)
	}
	if why := checkRun(unlinked, want, false); why != "" {
		t.Errorf("without recorded spans links are not checked: %q", why)
	}
	if why := checkRun(good[:2], want, true); !strings.Contains(why, "want") {
		t.Errorf("other modes: %q", why)
	}
}

// TestRetryScenario drives the retrying scenario through the relay, with and
// without recorded spans: one run of four attempts, as the table prints it.
func TestRetryScenario(t *testing.T) {
	var sc Scenario
	for _, s := range Scenarios() {
		if s.WantRun != "" {
			sc = s
		}
	}
	if !sc.Retries {
		t.Fatal("no retrying scenario")
	}
	for _, file := range []string{filepath.Join(t.TempDir(), "traces.jsonl"), ""} {
		rep, err := Run(t.Context(), Config{Scenarios: []Scenario{sc}, TraceFile: file})
		if err != nil {
			t.Fatal(err)
		}
		row := rep.Rows[0]
		if !row.Pass {
			t.Fatalf("trace file %q: %s", file, row.Why)
		}
		if got := RunText(row.Run); got != "4 attempts: lb_closed_early ×3, then issuer_timeout" {
			t.Errorf("trace file %q: the run is %q", file, got)
		}
		// Recorded spans link each retry to the first; without a trace
		// file no span is recorded, and what links say is moot.
		for i, a := range row.Run {
			if file != "" && a.Linked != (i > 0) {
				t.Errorf("trace file %q: attempt %d linked %v", file, a.Number, a.Linked)
			}
		}
		var b strings.Builder
		PrintTable(&b, rep)
		if !strings.Contains(b.String(), "4 attempts: lb_closed_early ×3, then issuer_timeout") {
			t.Errorf("the table does not show the run:\n%s", b.String())
		}
	}
}
