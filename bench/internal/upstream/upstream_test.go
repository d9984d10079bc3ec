package upstream

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/ccproxy-dev/ccproxy/bench/internal/wire"
)

// A raw-phase operation inside the TLS phase ends the connection instead
// of being obeyed, and Serve returns once its context ends.
func TestRejectsRawOpInTLSPhase(t *testing.T) {
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
	go func() { done <- (&Server{TLS: cfg}).Serve(ctx, ln) }()

	c, err := tls.Dial("tcp", ln.Addr().String(), wire.ClientTLSConfig(make([]byte, 32)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if err := wire.Write(c, wire.Msg{Op: wire.OpDownload, Arg: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	if _, err := wire.Read(c); !errors.Is(err, io.EOF) {
		t.Errorf("after a download request in the TLS phase: %v, want EOF", err)
	}

	// A held connection must not keep Serve from returning.
	held, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after its context ended")
	}
}

func TestServeNeedsTLS(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if err := (&Server{}).Serve(context.Background(), ln); err == nil {
		t.Error("Serve without a TLS configuration succeeded")
	}
}
