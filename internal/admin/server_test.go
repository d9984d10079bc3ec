package admin

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestHandlerRoutes(t *testing.T) {
	m, err := NewMetrics(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Shutdown(context.Background())
	notReady := func(context.Context) error { return errors.New("lookup coordinator: no such host") }

	tests := []struct {
		name       string
		srv        *Server
		method     string
		path       string
		wantCode   int
		wantType   string // prefix of Content-Type
		wantInBody string
	}{
		{"healthz", New("", m, notReady), http.MethodGet, "/healthz", 200, "text/plain", "ok"},
		{"healthz ignores readiness", New("", m, notReady), http.MethodGet, "/healthz", 200, "text/plain", "ok"},
		{"healthz HEAD", New("", m, nil), http.MethodHead, "/healthz", 200, "text/plain", ""},
		{"readyz nil check", New("", m, nil), http.MethodGet, "/readyz", 200, "text/plain", "ok"},
		{"readyz not ready", New("", m, notReady), http.MethodGet, "/readyz", 503, "text/plain", "no such host"},
		{"metrics", New("", m, nil), http.MethodGet, "/metrics", 200, "text/plain; version=0.0.4", "ccproxy_"},
		{"metrics without handler", New("", nil, nil), http.MethodGet, "/metrics", 404, "text/plain", "not served"},
		{"POST rejected", New("", m, nil), http.MethodPost, "/healthz", 405, "", ""},
		{"unknown path", New("", m, nil), http.MethodGet, "/", 404, "", ""},
	}
	m.ConnOpened("coordinator:1313") // so /metrics has a ccproxy_ series
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			tt.srv.Handler().ServeHTTP(rec, httptest.NewRequest(tt.method, tt.path, nil))
			if rec.Code != tt.wantCode {
				t.Errorf("status %d, want %d (body %q)", rec.Code, tt.wantCode, rec.Body.String())
			}
			if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, tt.wantType) {
				t.Errorf("Content-Type %q, want prefix %q", ct, tt.wantType)
			}
			if !strings.Contains(rec.Body.String(), tt.wantInBody) {
				t.Errorf("body %q does not contain %q", rec.Body.String(), tt.wantInBody)
			}
		})
	}
}

func TestReadyzFlips(t *testing.T) {
	var resolved atomic.Bool
	srv := New("", nil, func(context.Context) error {
		if !resolved.Load() {
			return errors.New("upstream coordinator does not resolve")
		}
		return nil
	})
	h := srv.Handler()
	get := func() (int, string) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
		return rec.Code, rec.Body.String()
	}
	for _, step := range []struct {
		resolved bool
		code     int
		body     string
	}{
		{false, 503, "not ready: upstream coordinator does not resolve\n"},
		{true, 200, "ok\n"},
		{false, 503, "not ready: upstream coordinator does not resolve\n"},
	} {
		resolved.Store(step.resolved)
		if code, body := get(); code != step.code || body != step.body {
			t.Errorf("resolved=%v: %d %q, want %d %q", step.resolved, code, body, step.code, step.body)
		}
	}
}

// A check that hangs (a resolver that never answers) must come back as a
// 503 within ReadyTimeout, not hang the probe.
func TestReadyzTimeout(t *testing.T) {
	srv := New("", nil, func(ctx context.Context) error {
		<-ctx.Done()
		return ctx.Err()
	})
	srv.ReadyTimeout = 50 * time.Millisecond
	start := time.Now()
	rec := httptest.NewRecorder()
	srv.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "deadline exceeded") {
		t.Errorf("got %d %q, want 503 with deadline exceeded", rec.Code, rec.Body.String())
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("readyz took %v with a 50ms ReadyTimeout", d)
	}
}

func TestServeLoopbackAndShutdown(t *testing.T) {
	m, err := NewMetrics(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Shutdown(context.Background())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- New("", m, nil).ServeListener(ctx, ln) }()

	base := "http://" + ln.Addr().String()
	for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s: %d", path, resp.StatusCode)
		}
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve after cancel: %v, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after its context ended")
	}
	if _, err := http.Get(base + "/healthz"); err == nil {
		t.Error("server still answers after shutdown")
	}
}

func TestServeListenError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	// The port is taken: Serve must fail at once, naming the address.
	err = New(ln.Addr().String(), nil, nil).Serve(context.Background())
	if err == nil || !strings.Contains(err.Error(), ln.Addr().String()) {
		t.Errorf("Serve on a used port: %v, want an error naming %s", err, ln.Addr())
	}
}
