package main

import (
	"crypto/tls"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/ccproxy-dev/ccproxy/integration/simulated/coordinator"
	"github.com/ccproxy-dev/ccproxy/integration/simulated/coordinatortest"
	"github.com/ccproxy-dev/ccproxy/trace"
)

// stormFixture is the ccproxy binary, writing a trace file, in front of a
// simulated Coordinator whose load balancer fails as configured.
type stormFixture struct {
	coord  *coordinator.Coordinator
	relay  *relayProcess
	traces string
}

func newStormFixture(t *testing.T, fault coordinator.Fault, args ...string) *stormFixture {
	t.Helper()
	c, addr := coordinatortest.Start(t, coordinator.Config{Fault: fault})
	traces := filepath.Join(t.TempDir(), "traces.jsonl")
	all := append([]string{"--trace-file", traces, "--log-format", "json"}, args...)
	return &stormFixture{coord: c, relay: startRelay(t, addr, all...), traces: traces}
}

// attempts makes n handshakes through the relay one after the other, as
// a CLI with grpc-go's zero reconnect backoff does, each expected to fail.
func (f *stormFixture) attempts(t *testing.T, n int) {
	t.Helper()
	for i := range n {
		c, err := net.DialTimeout("tcp", f.relay.addr, 5*time.Second)
		if err != nil {
			t.Fatalf("attempt %d: %v", i+1, err)
		}
		tc := tls.Client(c, &tls.Config{ServerName: "localhost", InsecureSkipVerify: true, NextProtos: []string{"h2"}})
		tc.SetDeadline(time.Now().Add(10 * time.Second))
		if err := tc.Handshake(); err == nil {
			t.Fatalf("attempt %d: the handshake succeeded through a failing load balancer", i+1)
		}
		tc.Close()
	}
}

// waitConnections waits until /metrics counts n connections (each
// connection is counted once its verdict is decided).
func (f *stormFixture) waitConnections(t *testing.T, n float64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		got := f.relay.metric(t, "ccproxy_connections_total", "")
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("ccproxy_connections_total = %v, want %v", got, n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// spanNames counts the file's spans by name.
func spanNames(t *testing.T, path string) map[string]int {
	t.Helper()
	names := map[string]int{}
	eachSpan(t, path, func(s ptrace.Span) { names[s.Name()]++ })
	return names
}

// analyzeJSON is `ccproxy analyze --output json` of files.
type analyzeJSON struct {
	Connections int `json:"connections"`
	Read        struct {
		Folded int `json:"folded_connections"`
	} `json:"read"`
	Modes []struct {
		Mode  string `json:"mode"`
		Count int    `json:"count"`
	} `json:"modes"`
	Upstreams []struct {
		Address string         `json:"address"`
		Count   int            `json:"count"`
		Modes   map[string]int `json:"modes"`
	} `json:"upstreams"`
	Runs struct {
		Runs int `json:"runs"`
		List []struct {
			Attempts int    `json:"attempts"`
			Folded   int    `json:"folded"`
			Outcome  string `json:"outcome"`
			Steps    []struct {
				Mode  string `json:"mode"`
				Count int    `json:"count"`
			} `json:"steps"`
		} `json:"list"`
	} `json:"runs"`
}

func analyzeFiles(t *testing.T, files ...string) analyzeJSON {
	t.Helper()
	out, errText, code := run(t, nil, append([]string{"analyze", "--output", "json"}, files...)...)
	if code != 0 {
		t.Fatalf("analyze exit %d: %s", code, errText)
	}
	var a analyzeJSON
	if err := json.Unmarshal([]byte(out), &a); err != nil {
		t.Fatalf("analyze JSON: %v\n%s", err, out)
	}
	return a
}

// logLines counts the relay's JSON log lines by message.
func logLines(stderr string) map[string]int {
	n := map[string]int{}
	for _, line := range strings.Split(stderr, "\n") {
		var rec struct {
			Msg string `json:"msg"`
		}
		if json.Unmarshal([]byte(line), &rec) == nil {
			n[rec.Msg]++
		}
	}
	return n
}

// TestStormIsFolded: 3,000 sequential attempts against a load balancer
// that closes after the ClientHello leave at most 200 spans and 1 MB in
// the trace file, while /metrics counts 3,000 connections and analyze
// 3,000 attempts of one run, all lb_closed_early; the log tells the same
// story in a few lines.
func TestStormIsFolded(t *testing.T) {
	const n = 3000
	f := newStormFixture(t, coordinator.FaultLBClose)
	f.attempts(t, n)
	f.waitConnections(t, n)
	folded := f.relay.metric(t, "ccproxy_root_spans_folded_total", "")
	f.relay.stop(t)

	names := spanNames(t, f.traces)
	total := 0
	for _, c := range names {
		total += c
	}
	st, err := os.Stat(f.traces)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d attempts: %d spans (%v), %d bytes of trace file, %v root spans folded", n, total, names, st.Size(), folded)
	if total > 200 || st.Size() > 1<<20 {
		t.Errorf("%d spans and %d bytes in the trace file: want at most 200 and 1 MB", total, st.Size())
	}
	if names[trace.SpanRun] == 0 {
		t.Errorf("no %s summary span", trace.SpanRun)
	}
	written := names[trace.SpanConnection]
	if int(folded)+written != n {
		t.Errorf("ccproxy_root_spans_folded_total %v + %d written root spans != %d connections", folded, written, n)
	}

	a := analyzeFiles(t, f.traces)
	if a.Connections != n || a.Read.Folded != n-written {
		t.Errorf("analyze: %d connections (%d folded), want %d (%d folded)", a.Connections, a.Read.Folded, n, n-written)
	}
	if len(a.Modes) != 1 || a.Modes[0].Mode != "lb_closed_early" || a.Modes[0].Count != n {
		t.Errorf("analyze modes %+v, want lb_closed_early ×%d", a.Modes, n)
	}
	if len(a.Upstreams) != 1 || a.Upstreams[0].Count != n || a.Upstreams[0].Modes["lb_closed_early"] != n {
		t.Errorf("analyze upstreams %+v, want one with %d connections", a.Upstreams, n)
	}
	if a.Runs.Runs != 1 || len(a.Runs.List) != 1 || a.Runs.List[0].Attempts != n || a.Runs.List[0].Folded != n-written {
		t.Fatalf("analyze runs %+v, want one run of %d attempts, %d folded", a.Runs, n, n-written)
	}
	if s := a.Runs.List[0].Steps; len(s) != 1 || s[0].Mode != "lb_closed_early" || s[0].Count != n {
		t.Errorf("run steps %+v, want lb_closed_early ×%d", s, n)
	}

	logs := logLines(f.relay.stderr.String())
	if logs["connection"] != written || logs["run"] == 0 {
		t.Errorf("log lines %v: want %d connection lines (one per written root span) and a run line", logs, written)
	}
}

// TestStormAlternatingKeepsEveryChange: a run whose mode changes at every
// attempt is written whole: every change is part of the story.
func TestStormAlternatingKeepsEveryChange(t *testing.T) {
	const n = 40
	f := newStormFixture(t, coordinator.FaultIssuerError)
	seq := make([]coordinator.Fault, 0, n)
	for range n / 2 {
		seq = append(seq, coordinator.FaultLBClose, coordinator.FaultIssuerError)
	}
	f.coord.SetFaultSequence(seq...)
	f.attempts(t, n)
	f.waitConnections(t, n)
	f.relay.stop(t)
	if got := spanNames(t, f.traces)[trace.SpanConnection]; got != n {
		t.Errorf("%d root spans for %d alternating attempts: every change must be written", got, n)
	}
	a := analyzeFiles(t, f.traces)
	if len(a.Runs.List) != 1 || len(a.Runs.List[0].Steps) != n || a.Runs.List[0].Folded != 0 {
		t.Errorf("analyze runs %+v: want one run of %d steps, none folded", a.Runs, n)
	}
}

// TestStormEveryAttemptReadsTheSame: --trace-every-attempt writes every
// root span, and analyze counts the same as with folding on.
func TestStormEveryAttemptReadsTheSame(t *testing.T) {
	const n = 300
	counts := func(args ...string) (analyzeJSON, int) {
		f := newStormFixture(t, coordinator.FaultLBClose, args...)
		f.attempts(t, n)
		f.waitConnections(t, n)
		f.relay.stop(t)
		return analyzeFiles(t, f.traces), spanNames(t, f.traces)[trace.SpanConnection]
	}
	every, everyRoots := counts("--trace-every-attempt")
	folded, foldedRoots := counts()
	if everyRoots != n || foldedRoots >= n {
		t.Errorf("root spans: %d with --trace-every-attempt (want %d), %d folded (want fewer)", everyRoots, n, foldedRoots)
	}
	if every.Connections != n || folded.Connections != n ||
		len(every.Runs.List) != 1 || len(folded.Runs.List) != 1 ||
		every.Runs.List[0].Attempts != n || folded.Runs.List[0].Attempts != n ||
		len(every.Modes) != 1 || len(folded.Modes) != 1 || every.Modes[0] != folded.Modes[0] ||
		len(every.Upstreams) != 1 || len(folded.Upstreams) != 1 || every.Upstreams[0].Count != folded.Upstreams[0].Count {
		t.Errorf("analyze differs:\nevery attempt %+v\nfolded        %+v", every, folded)
	}
}

// TestStormRotatedTraceFile: with every attempt written, a storm outgrows
// a 1 MiB trace file many times; the file is rotated with the number of
// old files kept, and analyze reads the set (named by the active file, or
// by a glob) as one.
func TestStormRotatedTraceFile(t *testing.T) {
	const n = 1500
	f := newStormFixture(t, coordinator.FaultLBClose, "--trace-every-attempt", "--trace-file-max-size", "1", "--trace-file-max-files", "50")
	f.attempts(t, n)
	f.waitConnections(t, n)
	f.relay.stop(t)
	set, err := trace.RotatedSet(f.traces)
	if err != nil {
		t.Fatal(err)
	}
	if len(set) < 3 {
		t.Fatalf("trace files %v: want the file rotated", set)
	}
	for _, name := range set {
		st, err := os.Stat(name)
		if err != nil {
			t.Fatal(err)
		}
		if st.Size() > 1<<20 {
			t.Errorf("%s: %d bytes, over --trace-file-max-size 1", name, st.Size())
		}
	}
	for _, arg := range []string{f.traces, filepath.Join(filepath.Dir(f.traces), "traces*.jsonl")} {
		a := analyzeFiles(t, arg)
		if a.Connections != n || len(a.Runs.List) != 1 || a.Runs.List[0].Attempts != n {
			t.Errorf("analyze %s over %d files: %d connections, runs %+v; want %d in one run", arg, len(set), a.Connections, a.Runs, n)
		}
	}
}
