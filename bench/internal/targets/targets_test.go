package targets

import (
	"context"
	"net"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ccproxy-dev/ccproxy/bench/internal/load"
	"github.com/ccproxy-dev/ccproxy/bench/internal/upstream"
	"github.com/ccproxy-dev/ccproxy/bench/internal/wire"
)

func TestHAProxyConfigPipes(t *testing.T) {
	tests := []struct {
		maxConn, fdLimit int
		want             string
	}{
		{9968, 20000, "maxpipes 16"},    // what the limit leaves
		{1000, 1 << 20, "maxpipes 250"}, // HAProxy's own default, maxconn/4
		{10000, 20000, "maxpipes 0"},    // nothing left: no splicing rather than no start
	}
	for _, tt := range tests {
		cfg := HAProxyConfig("127.0.0.1:1", "127.0.0.1:2", tt.maxConn, tt.fdLimit)
		if !strings.Contains(cfg, tt.want+"\n") || !strings.Contains(cfg, "option splice-auto") || !strings.Contains(cfg, "mode tcp") {
			t.Errorf("maxconn %d, limit %d: want %q, splice-auto, TCP mode:\n%s", tt.maxConn, tt.fdLimit, tt.want, cfg)
		}
	}
}

func TestCommand(t *testing.T) {
	o := Options{CCProxy: "/bin/ccproxy", Socat: "/bin/socat", Harness: "/bin/ccrelay", Self: "/bin/ccbench", HarnessArgs: []string{"-cpuprofile", "x"}, WorkDir: t.TempDir()}
	tests := []struct {
		kind Kind
		want []string
	}{
		{CCProxy, []string{"/bin/ccproxy", "--listen", "127.0.0.1:7", "--upstream", "127.0.0.1:8", "--idle-timeout", "0", "--max-connections", "20000", "--drain-timeout", "1s"}},
		{Socat, []string{"/bin/socat", "-d", "TCP-LISTEN:7,fork,reuseaddr,bind=127.0.0.1", "TCP:127.0.0.1:8"}},
		{GoCopy, []string{"/bin/ccbench", "gocopy", "127.0.0.1:7", "127.0.0.1:8"}},
		{Harness, []string{"/bin/ccrelay", "-listen", "127.0.0.1:7", "-upstream", "127.0.0.1:8", "-max-connections", "20000", "-cpuprofile", "x"}},
	}
	for _, tt := range tests {
		got, err := command(tt.kind, "127.0.0.1:7", "127.0.0.1:8", 7, o)
		if err != nil || !slices.Equal(got, tt.want) {
			t.Errorf("%s: %q, %v; want %q", tt.kind, got, err, tt.want)
		}
	}
	traced, err := command(CCProxyTraced, "127.0.0.1:7", "127.0.0.1:8", 7, o)
	if err != nil || traced[len(traced)-2] != "--trace-file" {
		t.Errorf("ccproxy-traced: %q, %v; want a --trace-file", traced, err)
	}
	if _, err := command("nginx", "a", "b", 1, o); err == nil {
		t.Error("unknown relay accepted")
	}
}

// A real relay (socat or HAProxy, where installed) in front of an
// in-process upstream: it starts, relays a benchmark connection, is
// measured and stops with its whole process group.
func TestRelaySmoke(t *testing.T) {
	cfg, err := wire.ServerTLSConfig()
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	go (&upstream.Server{TLS: cfg}).Serve(ctx, ln)

	for _, k := range []Kind{Socat, HAProxy} {
		t.Run(string(k), func(t *testing.T) {
			bin, err := exec.LookPath(string(k))
			if err != nil {
				t.Skipf("%s not installed", k)
			}
			o := Options{Socat: bin, HAProxy: bin, MaxConns: 100, FDLimit: 1024, WorkDir: t.TempDir()}
			r, err := Start(ctx, k, ln.Addr().String(), o)
			if err != nil {
				t.Fatal(err)
			}
			pool := &load.Pool{D: &load.Dialer{Addr: r.Addr}}
			if err := pool.Grow(ctx, 2, 2); err != nil {
				t.Fatal(err)
			}
			u, err := r.Usage()
			if err != nil {
				t.Fatal(err)
			}
			wantProcs := 1
			if k == Socat {
				wantProcs = 3 // the listener and one child per connection
			}
			if u.Procs < wantProcs || u.RSS <= 0 || u.FDs < 4 {
				t.Errorf("usage with 2 connections: %+v, want at least %d processes, memory and 4 descriptors", u, wantProcs)
			}
			pool.Close()
			if err := r.Stop(); err != nil {
				t.Errorf("stop: %v", err)
			}
			if _, err := net.DialTimeout("tcp", r.Addr, time.Second); err == nil {
				t.Error("relay still accepting after Stop")
			}
		})
	}
}

func TestDirect(t *testing.T) {
	r, err := Start(context.Background(), Direct, "127.0.0.1:9", Options{})
	if err != nil || r.Addr != "127.0.0.1:9" || r.PID() != 0 {
		t.Fatalf("direct: %+v, %v", r, err)
	}
	if _, err := r.Usage(); err == nil {
		t.Error("direct has no process, but Usage succeeded")
	}
	if err := r.Stop(); err != nil {
		t.Error(err)
	}
}
