package analyze

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/ccproxy-dev/ccproxy/internal/failure"
	"github.com/ccproxy-dev/ccproxy/trace"
)

func TestConnectionSentNothing(t *testing.T) {
	tests := []struct {
		name  string
		mode  failure.Mode
		bytes any // nil: no attribute
		want  bool
	}{
		{"aborted without a byte", failure.ClientAborted, 0, true},
		{"aborted without a byte (double)", failure.ClientAborted, 0.0, true},
		{"aborted after a partial ClientHello", failure.ClientAborted, 3, false},
		{"aborted, bytes not recorded", failure.ClientAborted, nil, false},
		{"not TLS", failure.ClientNotTLS, 0, false},
		{"upstream refused before the client spoke", failure.UpstreamRefused, 0, false},
		{"ok", failure.OK, 2426, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			attrs := map[string]any{string(trace.FailureMode): string(tt.mode)}
			switch v := tt.bytes.(type) {
			case int:
				attrs[string(trace.BytesClientToUp)] = v
			case float64:
				attrs[string(trace.BytesClientToUp)] = v
			}
			conns, _ := readAll(t, nil, otlpLine(t, 1, spanSpec{id: 1, name: trace.SpanConnection, end: time.Millisecond, attrs: attrs}))
			if len(conns) != 1 {
				t.Fatalf("%d connections", len(conns))
			}
			if got := conns[0].SentNothing(); got != tt.want {
				t.Errorf("SentNothing() = %v, want %v", got, tt.want)
			}
		})
	}
}

// sentNothingInput is a relay's file with more connections that sent
// nothing (health checks) than failures: 4 sent nothing, 1 client_aborted
// after a few bytes, 2 ok, 1 lb_closed_early.
func sentNothingInput(t testing.TB) string {
	conn := func(tid byte, at time.Duration, mode failure.Mode, sent int) string {
		return otlpLine(t, tid, spanSpec{id: 1, name: trace.SpanConnection, start: at, end: at + time.Millisecond,
			attrs: map[string]any{
				string(trace.FailureMode): string(mode), string(trace.FailureDetail): "detail of " + string(mode),
				string(trace.UpstreamAddress): "coordinator:1313", string(trace.BytesClientToUp): sent,
			}})
	}
	return conn(1, 0, failure.ClientAborted, 0) +
		conn(2, time.Second, failure.OK, 2426) +
		conn(3, 2*time.Second, failure.ClientAborted, 0) +
		conn(4, 3*time.Second, failure.LBClosedEarly, 1589) +
		conn(5, 4*time.Second, failure.ClientAborted, 0) +
		conn(6, 5*time.Second, failure.ClientAborted, 7) +
		conn(7, 6*time.Second, failure.OK, 2427) +
		conn(8, 7*time.Second, failure.ClientAborted, 0)
}

func TestSummarySetsApartSentNothing(t *testing.T) {
	conns, st := readAll(t, nil, sentNothingInput(t))
	s := Summarize(conns, Options{Bucket: 4 * time.Second})
	s.Read = st
	if s.Connections != 8 || s.SentNothing.Count != 4 || !s.SentNothing.First.Equal(htmlT0) || !s.SentNothing.Last.Equal(htmlT0.Add(7*time.Second)) {
		t.Fatalf("connections %d, sent nothing %+v", s.Connections, s.SentNothing)
	}
	want := []ModeCount{
		{Mode: "ok", Count: 2, Percent: 50},
		{Mode: "client_aborted", Count: 1, Percent: 25},
		{Mode: "lb_closed_early", Count: 1, Percent: 25},
	}
	if len(s.Modes) != len(want) {
		t.Fatalf("modes %+v", s.Modes)
	}
	for i, w := range want {
		if m := s.Modes[i]; m.Mode != w.Mode || m.Count != w.Count || m.Percent != w.Percent {
			t.Errorf("mode %d = %+v, want %+v", i, m, w)
		}
	}
	if u := s.Upstreams[0]; u.Count != 8 || u.SentNothing != 4 || u.OK != 2 || u.Modes["client_aborted"] != 1 {
		t.Errorf("upstream %+v", u)
	}
	if b := s.Buckets[0]; b.Total != 4 || b.SentNothing != 2 || b.Modes["client_aborted"] != 0 || b.Modes["ok"] != 1 {
		t.Errorf("bucket 0 %+v", b)
	}
	for _, d := range s.Details {
		if d.Mode == "client_aborted" && d.Count != 1 {
			t.Errorf("details count the connections that sent nothing: %+v", d)
		}
	}

	var text bytes.Buffer
	if err := s.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	out := text.String()
	for _, want := range []string{
		"By failure mode (4 that sent something)",
		"4 connections sent nothing (health checks, port scans, abandoned retries)",
		"2 sent nothing",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("text lacks %q:\n%s", want, out)
		}
	}
	table := out[strings.Index(out, "By failure mode"):strings.Index(out, "Sent nothing")]
	if first := strings.Fields(strings.Split(table, "\n")[2]); first[0] != "ok" {
		t.Errorf("the failure table starts with %v, want ok:\n%s", first, table)
	}

	var js bytes.Buffer
	if err := s.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	var back struct {
		Connections int `json:"connections"`
		SentNothing struct {
			Count int `json:"count"`
		} `json:"sent_nothing"`
		Modes []ModeCount `json:"modes"`
	}
	if err := json.Unmarshal(js.Bytes(), &back); err != nil || back.Connections != 8 || back.SentNothing.Count != 4 || len(back.Modes) != 3 {
		t.Errorf("JSON: %v %+v\n%s", err, back, js.String())
	}

	// With none set apart, the text has no such section.
	s = Summarize(conns[1:2], Options{})
	text.Reset()
	if err := s.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(text.String(), "sent nothing") || strings.Contains(text.String(), "Sent nothing") {
		t.Errorf("text mentions sent nothing without any:\n%s", text.String())
	}
}

func TestHTMLPageSetsApartSentNothing(t *testing.T) {
	input := sentNothingInput(t)
	tests := []struct {
		name  string
		sel   TraceSelection
		drawn int
	}{
		{name: "all", sel: TraceSelection{}, drawn: 4},
		{name: "mode client_aborted", sel: TraceSelection{Filter: Options{Mode: "client_aborted"}}, drawn: 1},
		// Asked for by its id, a connection that sent nothing is drawn.
		{name: "one trace that sent nothing", sel: TraceSelection{TraceID: traceID(3)}, drawn: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			page, traces := renderPage(t, input, tt.sel)
			checkWellFormed(t, page)
			if len(traces) != tt.drawn {
				t.Errorf("%d traces drawn, want %d", len(traces), tt.drawn)
			}
			line := textsWithClass(t, page, "", "sent-nothing")
			if tt.sel.TraceID.IsEmpty() && (len(line) != 1 || !strings.HasPrefix(line[0], "4 connections sent nothing (health checks, port scans, abandoned retries)")) {
				t.Errorf("sent-nothing line %q", line)
			}
			modes := textsWithClass(t, page, "summary", "badge")
			if tt.name == "all" && (len(modes) == 0 || modes[0] != "ok") {
				t.Errorf("the mode table starts %q, want ok first", modes)
			}
		})
	}
}
