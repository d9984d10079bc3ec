package main

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/ccproxy-dev/ccproxy/internal/demo"
	"github.com/ccproxy-dev/ccproxy/internal/failure"
)

// TestDemoThenAnalyze is the README's first command end to end: the demo
// names every scenario correctly (exit 0), and `analyze` on its trace file
// counts each failure mode exactly as often as the file holds connection
// spans with it (client_aborted without a byte from the client apart, as
// sent_nothing), and reports every mode a scenario produced.
func TestDemoThenAnalyze(t *testing.T) {
	traces := filepath.Join(t.TempDir(), "demo.jsonl")
	out, stderr, code := run(t, nil, "demo", "--trace-file", traces)
	if code != 0 {
		t.Fatalf("demo exit %d\n%s\n%s", code, out, stderr)
	}
	n := len(demo.Scenarios())
	if want := "of " + itoa(n) + " scenarios named correctly"; !strings.Contains(out, itoa(n)+" "+want) {
		t.Errorf("demo output lacks %q:\n%s", want, out)
	}

	truth, truthNothing := modesInFile(t, traces)
	js, stderr, code := run(t, nil, "analyze", "--output", "json", traces)
	if code != 0 {
		t.Fatalf("analyze exit %d: %s", code, stderr)
	}
	var rep struct {
		Connections int `json:"connections"`
		SentNothing struct {
			Count int `json:"count"`
		} `json:"sent_nothing"`
		Modes []struct {
			Mode  string `json:"mode"`
			Count int    `json:"count"`
		} `json:"modes"`
	}
	if err := json.Unmarshal([]byte(js), &rep); err != nil {
		t.Fatalf("analyze JSON: %v\n%s", err, js)
	}
	got := map[string]int{}
	total := 0
	for _, m := range rep.Modes {
		got[m.Mode] = m.Count
		total += m.Count
	}
	if total+rep.SentNothing.Count != rep.Connections {
		t.Errorf("mode counts add up to %d, with %d that sent nothing; connections = %d", total, rep.SentNothing.Count, rep.Connections)
	}
	if rep.SentNothing.Count != truthNothing || truthNothing == 0 {
		t.Errorf("analyze sets %d connections apart as sent nothing, the file has %d (the demo's bare connect-and-close makes some)", rep.SentNothing.Count, truthNothing)
	}
	got[string(failure.ClientAborted)] += rep.SentNothing.Count
	for mode, want := range truth {
		if got[mode] != want {
			t.Errorf("analyze counts %d %s connections, the file has %d", got[mode], mode, want)
		}
	}
	for _, sc := range demo.Scenarios() {
		if !sc.ByProbe && got[string(sc.Want)] == 0 {
			t.Errorf("scenario %q: analyze reports no %s connection", sc.Name, sc.Want)
		}
	}
}

// modesInFile counts the connection spans per failure mode, and those of
// client_aborted without a byte from the client, read with the collector's
// own OTLP/JSON decoder.
func modesInFile(t *testing.T, path string) (modes map[string]int, sentNothing int) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	counts := map[string]int{}
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 64<<20)
	for sc.Scan() {
		td, err := (&ptrace.JSONUnmarshaler{}).UnmarshalTraces(sc.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < td.ResourceSpans().Len(); i++ {
			ss := td.ResourceSpans().At(i).ScopeSpans()
			for j := 0; j < ss.Len(); j++ {
				spans := ss.At(j).Spans()
				for k := 0; k < spans.Len(); k++ {
					s := spans.At(k)
					if s.Name() != "ccproxy.connection" {
						continue
					}
					m, _ := s.Attributes().Get("ccproxy.failure_mode")
					if !failure.Mode(m.Str()).Known() {
						t.Errorf("span with unknown failure mode %q", m.Str())
					}
					counts[m.Str()]++
					if b, ok := s.Attributes().Get("ccproxy.bytes.client_to_upstream"); ok && b.Int() == 0 && m.Str() == string(failure.ClientAborted) {
						sentNothing++
					}
				}
			}
		}
	}
	return counts, sentNothing
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}
