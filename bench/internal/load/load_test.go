package load

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/ccproxy-dev/ccproxy/bench/internal/upstream"
	"github.com/ccproxy-dev/ccproxy/bench/internal/wire"
)

// startUpstream serves the benchmark protocol on a loopback port for the
// test's lifetime.
func startUpstream(t *testing.T) string {
	t.Helper()
	cfg, err := wire.ServerTLSConfig()
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- (&upstream.Server{TLS: cfg}).Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("upstream: %v", err)
		}
	})
	return ln.Addr().String()
}

// The workloads against the upstream directly, at toy sizes: each must
// move what it says and report plausible numbers.
func TestWorkloadsSmoke(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d := &Dialer{Addr: startUpstream(t)}

	bulk, err := Throughput(ctx, d, 3<<20+17) // not a multiple of the buffer
	if err != nil {
		t.Fatal("throughput:", err)
	}
	if bulk.Bytes != 3<<20+17 || bulk.Upload <= 0 || bulk.Download <= 0 {
		t.Errorf("throughput = %+v", bulk)
	}

	rtts, err := PingPong(ctx, d, 50, 64)
	if err != nil {
		t.Fatal("ping-pong:", err)
	}
	if len(rtts) != 50 {
		t.Errorf("ping-pong: %d samples, want 50", len(rtts))
	}

	fb, err := FirstByte(ctx, d, 3)
	if err != nil {
		t.Fatal("first byte:", err)
	}
	for _, x := range fb {
		// The client stamps before its write and the server after its
		// read, on one clock: never negative, and far below a second.
		if x < 0 || x > time.Second {
			t.Errorf("first-byte latency %v out of range", x)
		}
	}

	rate := ConnRate(ctx, d, 2, 200*time.Millisecond)
	if rate.Conns == 0 || rate.Errors != 0 || rate.PerSecond() <= 0 {
		t.Errorf("connection rate = %+v (first error %v)", rate, rate.FirstErr)
	}

	p := &Pool{D: d}
	defer p.Close()
	if err := p.Grow(ctx, 5, 2); err != nil {
		t.Fatal("pool:", err)
	}
	if err := p.Grow(ctx, 8, 3); err != nil {
		t.Fatal("pool:", err)
	}
	if p.Len() != 8 {
		t.Errorf("pool holds %d, want 8", p.Len())
	}
}

// A peer that is not the benchmark upstream fails Open with the address in
// the error, within the dialer's timeout.
func TestOpenFailsOnNonTLSPeer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("SSH-2.0-OpenSSH_9.2\r\n"))
			c.Close()
		}
	}()
	d := &Dialer{Addr: ln.Addr().String(), Timeout: 5 * time.Second}
	_, err = d.Open(context.Background(), 1, false)
	if err == nil || !strings.Contains(err.Error(), ln.Addr().String()) {
		t.Fatalf("Open: err %v, want a handshake failure naming the address", err)
	}
	p := &Pool{D: d}
	if err := p.Grow(context.Background(), 3, 2); err == nil || p.Len() != 0 {
		t.Fatalf("Grow: err %v, %d held; want a failure and none held", err, p.Len())
	}
}
