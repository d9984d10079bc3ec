package analyze

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// jaegerConfig runs Jaeger v2 with in-memory storage, an OTLP/HTTP receiver
// and the query API, each on its own loopback port and nothing else (the
// all-in-one default opens a dozen fixed ports, which collide with other
// tests on the same machine).
const jaegerConfig = `service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    logs:
      level: warn
extensions:
  jaeger_storage:
    backends:
      mem:
        memory:
          max_traces: 10000
  jaeger_query:
    storage:
      traces: mem
    http:
      endpoint: 127.0.0.1:%d
    grpc:
      endpoint: 127.0.0.1:%d
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:%d
exporters:
  jaeger_storage_exporter:
    trace_storage: mem
`

// jaegerBinary finds the Jaeger binary that scripts/jaeger.sh builds. In CI
// its absence is an error, so that the test cannot silently stop running.
func jaegerBinary(t *testing.T) string {
	t.Helper()
	bin := os.Getenv("CCPROXY_JAEGER_BIN")
	if bin == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("CCPROXY_JAEGER_BIN is not set: build Jaeger with scripts/jaeger.sh and export CCPROXY_JAEGER_BIN=$(scripts/jaeger.sh)")
		}
		t.Skip("CCPROXY_JAEGER_BIN not set; run: CCPROXY_JAEGER_BIN=$(scripts/jaeger.sh) go test ./analyze/ -run Jaeger")
	}
	if st, err := os.Stat(bin); err != nil || st.IsDir() {
		t.Fatalf("CCPROXY_JAEGER_BIN=%s is not a file: %v", bin, err)
	}
	return bin
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// syncBuffer collects Jaeger's output for the failure message.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startJaeger runs Jaeger until the test ends and returns the query API's
// and the OTLP/HTTP receiver's base URLs.
func startJaeger(t *testing.T, bin string) (queryURL, otlpURL string) {
	t.Helper()
	queryPort, grpcPort, otlpPort := freePort(t), freePort(t), freePort(t)
	cfg := filepath.Join(t.TempDir(), "jaeger.yaml")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, jaegerConfig, queryPort, grpcPort, otlpPort), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, "--config", cfg)
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("starting %s: %v", bin, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			t.Errorf("jaeger did not exit")
		}
	})

	queryURL = fmt.Sprintf("http://127.0.0.1:%d", queryPort)
	otlpURL = fmt.Sprintf("http://127.0.0.1:%d", otlpPort)
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case err := <-exited:
			t.Fatalf("jaeger exited early (%v):\n%s", err, out.String())
		default:
		}
		if ok(queryURL+"/api/services") && reachable(otlpURL) {
			return queryURL, otlpURL
		}
		if time.Now().After(deadline) {
			t.Fatalf("jaeger not ready after 60s:\n%s", out.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func ok(u string) bool {
	resp, err := http.Get(u)
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

func reachable(u string) bool {
	resp, err := http.Get(u + "/v1/traces")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return true
}

func TestJaegerIntegration(t *testing.T) {
	bin := jaegerBinary(t)
	queryURL, otlpURL := startJaeger(t, bin)

	first, second := testSpans()
	for _, batch := range [][]span{first, second} {
		resp, err := http.Post(otlpURL+"/v1/traces", "application/json", bytes.NewReader(exportLine(t, batch)))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("posting OTLP/JSON: %s: %s", resp.Status, body)
		}
	}

	// Spans reach storage asynchronously; poll until all are queryable.
	fetch := func(mode string) []Connection {
		t.Helper()
		var conns []Connection
		q := JaegerQuery{BaseURL: queryURL, Mode: mode, Limit: 100}
		if _, err := FetchJaeger(context.Background(), q, func(c Connection) { conns = append(conns, c) }); err != nil {
			t.Fatal(err)
		}
		return conns
	}
	deadline := time.Now().Add(30 * time.Second)
	var all []Connection
	for {
		all = fetch("")
		if len(all) >= 9 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if len(all) != 9 {
		t.Fatalf("jaeger returned %d connections, want 9", len(all))
	}

	lb := fetch("lb_closed_early")
	if len(lb) != 3 {
		t.Fatalf("filtered by mode: %d connections, want 3", len(lb))
	}
	for _, c := range lb {
		if c.Mode != "lb_closed_early" || c.Upstream != "lb.example:1313" {
			t.Errorf("filtered connection %+v", c)
		}
	}

	s := Summarize(all, Options{})
	if s.Modes[0].Mode != "ok" || s.Modes[0].Count != 4 || !s.From.Equal(base) {
		t.Errorf("modes %+v from %v", s.Modes, s.From)
	}
	wantFB := Percentiles{Count: 6, P50: 30.5, P90: 1000, P99: 1000, Max: 1000}
	if s.FirstByte != wantFB {
		t.Errorf("first byte through jaeger %+v, want %+v", s.FirstByte, wantFB)
	}
}
