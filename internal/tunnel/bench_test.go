package tunnel

import (
	"context"
	"io"
	"net"
	"testing"
	"time"

	"github.com/ccproxy-dev/ccproxy/internal/watch"
	"github.com/ccproxy-dev/ccproxy/proxy"
)

// The benchmarks compare the tunnel with relay mode on loopback:
//
//	go test -run '^$' -bench . -benchtime 3s ./tunnel/
//
// Throughput moves 16 MiB per operation to an upstream that reads to EOF
// and answers one byte; RoundTrip is one byte echoed on an open
// connection; Connect is a new connection up to its first echoed byte.

const benchBulk = 16 << 20

// benchPaths returns the address to dial for each path to upstream: the
// upstream itself, relay mode in front of it, and the tunnel.
func benchPaths(b *testing.B, upstream string) map[string]string {
	b.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)

	w := watch.New(watch.Config{})
	p := &proxy.Proxy{Routes: []proxy.Route{{Listen: "127.0.0.1:0", Upstream: upstream}}, NewObserver: w.Observe}
	lns, err := p.Listen(ctx)
	if err != nil {
		b.Fatal(err)
	}
	go p.Serve(ctx, lns)

	srvCert, cliCert := testCert(b, "s"), testCert(b, "c")
	srv := &Server{
		Listen: "127.0.0.1:0",
		Routes: []Route{{Name: "bench", Upstream: upstream}},
		Cert:   srvCert,
		Peers:  []Fingerprint{FingerprintOf(cliCert.Certificate[0])},
		Relay:  WatchRelayer(&proxy.Proxy{}, watch.Config{}),
	}
	pc, err := srv.Bind(ctx)
	if err != nil {
		b.Fatal(err)
	}
	go srv.Serve(ctx, pc)
	cl := &Client{
		Server: pc.LocalAddr().String(),
		Routes: []LocalRoute{{Listen: "127.0.0.1:0"}},
		Cert:   cliCert,
		Peers:  []Fingerprint{FingerprintOf(srvCert.Certificate[0])},
	}
	clns, err := cl.Listen(ctx)
	if err != nil {
		b.Fatal(err)
	}
	go cl.Serve(ctx, clns)
	return map[string]string{
		"direct": upstream,
		"relay":  lns[0].Addr().String(),
		"tunnel": clns[0].Addr().String(),
	}
}

func benchUpstream(b *testing.B, handle func(net.Conn)) string {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); handle(c) }()
		}
	}()
	return ln.Addr().String()
}

func BenchmarkThroughput(b *testing.B) {
	up := benchUpstream(b, func(c net.Conn) {
		io.Copy(io.Discard, c)
		c.Write([]byte{1})
	})
	buf := make([]byte, 256<<10)
	paths := benchPaths(b, up)
	for _, name := range []string{"direct", "relay", "tunnel"} {
		addr := paths[name]
		b.Run(name, func(b *testing.B) {
			b.SetBytes(benchBulk)
			for b.Loop() {
				c, err := net.Dial("tcp", addr)
				if err != nil {
					b.Fatal(err)
				}
				for sent := 0; sent < benchBulk; sent += len(buf) {
					if _, err := c.Write(buf); err != nil {
						b.Fatal(err)
					}
				}
				c.(*net.TCPConn).CloseWrite()
				if _, err := io.ReadFull(c, buf[:1]); err != nil {
					b.Fatal(err)
				}
				c.Close()
			}
		})
	}
}

func echo(c net.Conn) { io.Copy(c, c) }

func BenchmarkRoundTrip(b *testing.B) {
	up := benchUpstream(b, echo)
	paths := benchPaths(b, up)
	for _, name := range []string{"direct", "relay", "tunnel"} {
		addr := paths[name]
		b.Run(name, func(b *testing.B) {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			var one [1]byte
			for b.Loop() {
				if _, err := c.Write(one[:]); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(c, one[:]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkConnect(b *testing.B) {
	up := benchUpstream(b, echo)
	paths := benchPaths(b, up)
	for _, name := range []string{"direct", "relay", "tunnel"} {
		addr := paths[name]
		// Let the tunnel come up before the clock runs.
		time.Sleep(200 * time.Millisecond)
		b.Run(name, func(b *testing.B) {
			var one [1]byte
			for b.Loop() {
				c, err := net.Dial("tcp", addr)
				if err != nil {
					b.Fatal(err)
				}
				c.Write(one[:])
				if _, err := io.ReadFull(c, one[:]); err != nil {
					b.Fatal(err)
				}
				c.Close()
			}
		})
	}
}
