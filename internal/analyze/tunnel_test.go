package analyze

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/ccproxy-dev/ccproxy/internal/failure"
	"github.com/ccproxy-dev/ccproxy/trace"
)

// tunnelConn is one connection carried through the tunnel, as both ends
// record it (see package tunnel's doc, "Traces"): the local end (`ccproxy
// tunnel connect`) a parentless ccproxy.connection span with tunnel.open and
// tunnel.stream children; the in-cluster end (`ccproxy tunnel serve`) its
// relay's ccproxy.connection span, a child of tunnel.stream, with the relay's
// phases below it. The local span lasts 40 ms, the in-cluster one 25 ms, so
// a test can tell which one was counted.
type tunnelConn struct {
	tid   byte
	start time.Duration
	mode  failure.Mode
}

const (
	localConnDur  = 40 * time.Millisecond
	remoteConnDur = 25 * time.Millisecond
)

func (c tunnelConn) local(t testing.TB) string {
	common := map[string]any{
		string(trace.FailureMode): string(c.mode), string(trace.FailureDetail): "the in-cluster relay's verdict",
		string(trace.UpstreamAddress): "coordinator:1313", string(trace.BytesClientToUp): 1589,
		"ccproxy.tunnel.server": "tunnel.example:4433", "ccproxy.tunnel.route": "userapi",
		"ccproxy.tunnel.stream_id": 4, "ccproxy.tunnel.verdict_source": "remote",
	}
	return otlpLine(t, c.tid,
		spanSpec{id: 2, parent: 1, name: "tunnel.open", start: c.start, end: c.start + time.Millisecond},
		spanSpec{id: 3, parent: 1, name: "tunnel.stream", start: c.start + time.Millisecond, end: c.start + 35*time.Millisecond,
			attrs: map[string]any{"ccproxy.tunnel.stream_id": 4, string(trace.BytesClientToUp): 1589}},
		spanSpec{id: 1, name: trace.SpanConnection, start: c.start, end: c.start + localConnDur, attrs: common},
	)
}

func (c tunnelConn) remote(t testing.TB) string {
	return otlpLine(t, c.tid,
		spanSpec{id: 0x12, parent: 0x11, name: trace.SpanUpstreamDial, start: c.start + 5*time.Millisecond, end: c.start + 6*time.Millisecond},
		spanSpec{id: 0x13, parent: 0x11, name: trace.SpanTLSHandshake, start: c.start + 6*time.Millisecond, end: c.start + 20*time.Millisecond},
		// The parent, tunnel.stream (3), is in the local end's file.
		spanSpec{id: 0x11, parent: 3, name: trace.SpanConnection, start: c.start + 5*time.Millisecond, end: c.start + 5*time.Millisecond + remoteConnDur,
			attrs: map[string]any{
				string(trace.FailureMode): string(c.mode), string(trace.FailureDetail): "the in-cluster relay's verdict",
				string(trace.UpstreamAddress): "coordinator:1313", string(trace.BytesClientToUp): 1589,
				"ccproxy.tunnel.peer": "192.0.2.7:51000", "ccproxy.tunnel.peer_fingerprint": "sha256:ab12",
				"ccproxy.tunnel.route": "userapi", "ccproxy.tunnel.stream_id": 4,
			}},
	)
}

var tunnelConns = []tunnelConn{
	{tid: 0x21, start: 0, mode: failure.OK},
	{tid: 0x22, start: time.Second, mode: failure.PolicyHashMismatch},
}

// tunnelFiles returns both ends' trace files for tunnelConns.
func tunnelFiles(t testing.TB) (local, remote string) {
	for _, c := range tunnelConns {
		local += c.local(t)
		remote += c.remote(t)
	}
	return local, remote
}

// readAll reads inputs with one Reader, as `ccproxy analyze` reads its
// files, collecting into tc if not nil.
func readAll(t *testing.T, tc *TraceCollector, inputs ...string) ([]Connection, ReadStats) {
	t.Helper()
	var conns []Connection
	r := NewReader(func(c Connection) { conns = append(conns, c) })
	if tc != nil {
		r.Collect(tc)
	}
	var st ReadStats
	for i, in := range inputs {
		s, err := r.ReadOTLPJSON(strings.NewReader(in), "file"+string(rune('A'+i)))
		if err != nil {
			t.Fatal(err)
		}
		st.Add(s)
	}
	st.Add(r.Flush())
	return conns, st
}

// TestTunnelEnds: every ccproxy.connection span is a connection, also the
// in-cluster end's whose parent is in the other end's file; both ends' files
// together count each connection once, as the local end's span.
func TestTunnelEnds(t *testing.T) {
	local, remote := tunnelFiles(t)
	relayed := okTrace(t, 0x30, 2*time.Second) // an ordinary relay connection
	var interleaved string
	for _, c := range tunnelConns {
		interleaved += c.remote(t) + c.local(t)
	}
	tests := []struct {
		name    string
		inputs  []string
		wantDur time.Duration // of each counted connection: which end's span
		extra   int           // connections besides the tunneled ones
	}{
		{name: "in-cluster end's file alone", inputs: []string{remote}, wantDur: remoteConnDur},
		{name: "local end's file alone", inputs: []string{local}, wantDur: localConnDur},
		{name: "both, local end first", inputs: []string{local, remote}, wantDur: localConnDur},
		{name: "both, in-cluster end first", inputs: []string{remote, local}, wantDur: localConnDur},
		{name: "both ends in one file", inputs: []string{interleaved}, wantDur: localConnDur},
		{name: "in-cluster end's file twice", inputs: []string{remote, remote}, wantDur: remoteConnDur},
		{name: "in-cluster end and a relay", inputs: []string{remote + relayed}, wantDur: remoteConnDur, extra: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tc := NewTraceCollector(TraceSelection{})
			conns, st := readAll(t, tc, tt.inputs...)
			if len(conns) != len(tunnelConns)+tt.extra || st.Connections != len(conns) {
				t.Fatalf("%d connections (stats %d), want %d", len(conns), st.Connections, len(tunnelConns)+tt.extra)
			}
			modes := map[string]int{}
			for _, c := range conns {
				modes[c.Mode]++
				if c.Upstream != "coordinator:1313" || (c.Mode != string(failure.OK) && c.Duration != tt.wantDur) {
					t.Errorf("connection %s to %s lasting %v; want the span lasting %v", c.Mode, c.Upstream, c.Duration, tt.wantDur)
				}
			}
			if modes[string(failure.PolicyHashMismatch)] != 1 || modes[string(failure.OK)] != 1+tt.extra {
				t.Errorf("modes %v", modes)
			}
			s := Summarize(conns, Options{})
			if s.Connections != len(tunnelConns)+tt.extra {
				t.Errorf("summary counts %d connections", s.Connections)
			}

			// The page draws each tunneled connection once, with both
			// ends' spans that were read, nested.
			traces := tc.Traces()
			if len(traces) != len(tunnelConns)+tt.extra || tc.Matched() != len(traces) {
				t.Fatalf("%d traces drawn, %d matched", len(traces), tc.Matched())
			}
			for _, tr := range traces {
				if tr.Conn.Mode == string(failure.PolicyHashMismatch) && tr.Conn.Duration != tt.wantDur {
					t.Errorf("trace %s drawn for the span lasting %v, want %v", tr.ID, tr.Conn.Duration, tt.wantDur)
				}
				if tr.ID[len(tr.ID)-2:] == hex.EncodeToString([]byte{0x30}) {
					continue
				}
				var names []string
				for _, s := range tr.Spans {
					names = append(names, strings.Repeat(" ", s.Depth)+s.Name)
				}
				got := strings.Join(names, "|")
				want := map[time.Duration]string{
					// The in-cluster end alone: its connection span is the root.
					remoteConnDur: "ccproxy.connection| upstream.dial| tls.handshake",
					// With the local end: nested under tunnel.stream.
					localConnDur: "ccproxy.connection| tunnel.open| tunnel.stream|  ccproxy.connection|   upstream.dial|   tls.handshake",
				}[tt.wantDur]
				if tt.name == "local end's file alone" {
					want = "ccproxy.connection| tunnel.open| tunnel.stream"
				}
				if got != want {
					t.Errorf("trace %s spans\n%s\nwant\n%s", tr.ID, got, want)
				}
			}
		})
	}
}

// TestTunnelEndsHTML draws the in-cluster end's file alone: its connections
// are on the page, the connection span at the root of the waterfall.
func TestTunnelEndsHTML(t *testing.T) {
	_, remote := tunnelFiles(t)
	page, traces := renderPage(t, remote, TraceSelection{Filter: Options{Mode: string(failure.PolicyHashMismatch)}})
	checkWellFormed(t, page)
	if len(traces) != 1 || traces[0].Conn.Mode != string(failure.PolicyHashMismatch) {
		t.Fatalf("traces %+v", traces)
	}
	if rows := textsWithClass(t, page, "wf", "op"); len(rows) != 3 || rows[0] != trace.SpanConnection {
		t.Errorf("waterfall rows %q", rows)
	}
	if !bytes.Contains(page, []byte("sha256:ab12")) || !bytes.Contains(page, []byte("1 connection from")) {
		t.Error("the page lacks the in-cluster end's connection or its attributes")
	}
}

// TestTunnelEndsJaeger: from Jaeger, a trace with only the in-cluster end's
// span (its parent was exported elsewhere) counts it; a trace with both ends
// counts the local one.
func TestTunnelEndsJaeger(t *testing.T) {
	span := func(id, parent, mode string, dur int64) map[string]any {
		refs := []map[string]string{}
		if parent != "" {
			refs = append(refs, map[string]string{"refType": "CHILD_OF", "spanID": parent})
		}
		return map[string]any{"spanID": id, "operationName": trace.SpanConnection, "references": refs,
			"startTime": base.UnixMicro(), "duration": dur, "processID": "p1",
			"tags": []map[string]any{{"key": string(trace.FailureMode), "type": "string", "value": mode}}}
	}
	body, _ := json.Marshal(map[string]any{"data": []map[string]any{
		{"traceID": "01", "spans": []any{span("0b", "0a", "ok", 25000)}},
		{"traceID": "02", "spans": []any{span("0b", "0a", "tls_alert", 25000), span("0a", "", "tls_alert", 40000), span("0c", "0b", "tls_alert", 1000)}},
	}})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(body) }))
	defer srv.Close()
	var conns []Connection
	st, err := FetchJaeger(context.Background(), JaegerQuery{BaseURL: srv.URL}, func(c Connection) { conns = append(conns, c) })
	if err != nil {
		t.Fatal(err)
	}
	if st.Connections != 2 || len(conns) != 2 {
		t.Fatalf("%d connections, want 2: %+v", len(conns), conns)
	}
	for _, c := range conns {
		want := map[string]time.Duration{"ok": 25 * time.Millisecond, "tls_alert": 40 * time.Millisecond}[c.Mode]
		if c.Duration != want {
			t.Errorf("%s counted the span lasting %v, want %v", c.Mode, c.Duration, want)
		}
	}
}
