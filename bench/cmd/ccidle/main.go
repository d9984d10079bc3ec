// Command ccidle holds idle relayed connections for memory profiling: it
// serves the benchmark upstream on -upstream, waits for a relay on -relay
// (started separately, in front of -upstream), opens -n connections through
// it as ccbench's idle test does (handshake, protected exchanges, one raw
// byte each way), prints "held N" and keeps them until interrupted.
//
//	ccidle -upstream 127.0.0.1:19001 -relay 127.0.0.1:19000 -n 1000 &
//	GODEBUG=memprofilerate=1 ccrelay -listen 127.0.0.1:19000 -upstream 127.0.0.1:19001 \
//	        -trace-file /tmp/t.jsonl -pprof-listen 127.0.0.1:6060
//	go tool pprof -sample_index=inuse_space 'http://127.0.0.1:6060/debug/pprof/heap?gc=1'
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/ccproxy-dev/ccproxy/bench/internal/load"
	"github.com/ccproxy-dev/ccproxy/bench/internal/upstream"
	"github.com/ccproxy-dev/ccproxy/bench/internal/wire"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "ccidle:", err)
		os.Exit(1)
	}
}

func run() error {
	up := flag.String("upstream", "127.0.0.1:19001", "address to serve the benchmark upstream on")
	relay := flag.String("relay", "127.0.0.1:19000", "relay address to open connections through")
	n := flag.Int("n", 1000, "idle connections to hold")
	workers := flag.Int("workers", 8, "concurrent clients opening them")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	cfg, err := wire.ServerTLSConfig()
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *up)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	go (&upstream.Server{TLS: cfg, Logger: log}).Serve(ctx, ln)

	for {
		c, err := net.Dial("tcp", *relay)
		if err == nil {
			c.Close()
			break
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(100 * time.Millisecond):
		}
	}
	pool := &load.Pool{D: &load.Dialer{Addr: *relay}}
	defer pool.Close()
	if err := pool.Grow(ctx, *n, *workers); err != nil {
		return err
	}
	fmt.Printf("held %d\n", pool.Len())
	<-ctx.Done()
	return nil
}
