// Command ccrelay runs ccproxy's relay in process with profiling on, for
// the benchmark's profiles. It wires package proxy and internal/watch as
// cmd/ccproxy's serveRelay does for one inspected route (tracing as
// configured, no evidence checker and no prober: neither runs for
// connections that end ok), and adds a CPU profile over its whole life and
// the net/http/pprof endpoints on a loopback address.
//
//	ccrelay -listen 127.0.0.1:9000 -upstream 127.0.0.1:9001 \
//	        -cpuprofile cpu.pprof -pprof-listen 127.0.0.1:6060
//	curl -s 127.0.0.1:6060/debug/pprof/heap > heap.pprof
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	rpprof "runtime/pprof"
	"syscall"
	"time"

	"github.com/ccproxy-dev/ccproxy/internal/watch"
	"github.com/ccproxy-dev/ccproxy/proxy"
	"github.com/ccproxy-dev/ccproxy/trace"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "ccrelay:", err)
		os.Exit(1)
	}
}

func run() error {
	listen := flag.String("listen", "127.0.0.1:0", "address to accept connections on")
	upstream := flag.String("upstream", "", "upstream host:port")
	maxConns := flag.Int("max-connections", 20000, "concurrent connections")
	traceFile := flag.String("trace-file", "", "OTLP/JSON span file (tracing off when empty, as ccproxy's default)")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	pprofListen := flag.String("pprof-listen", "", "serve /debug/pprof/ on this loopback address")
	flag.Parse()
	if *upstream == "" {
		return errors.New("-upstream is required")
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))

	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := rpprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("cpu profile: %w", err)
		}
		defer rpprof.StopCPUProfile()
	}
	if *pprofListen != "" {
		ln, err := net.Listen("tcp", *pprofListen)
		if err != nil {
			return fmt.Errorf("pprof listener: %w", err)
		}
		srv := &http.Server{Handler: pprofMux(), ReadHeaderTimeout: 10 * time.Second}
		go srv.Serve(ln)
		defer srv.Close()
	}

	tp, err := trace.Setup(ctx, trace.Config{File: *traceFile, Logger: log})
	if err != nil {
		return fmt.Errorf("tracing: %w", err)
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		tp.Shutdown(sctx)
	}()
	w := watch.New(watch.Config{Tracer: tp.Tracer(), Logger: log})
	p := &proxy.Proxy{
		Routes:       []proxy.Route{{Listen: *listen, Upstream: *upstream, Inspect: true}},
		IdleTimeout:  -1,
		DrainTimeout: time.Second,
		MaxConns:     *maxConns,
		Logger:       log,
		NewObserver:  w.Observe,
	}
	return p.Run(ctx)
}

// pprofMux serves net/http/pprof's handlers plus /debug/goroutines (the
// goroutine count as a bare number) and /debug/gc.
func pprofMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("/debug/goroutines", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, runtime.NumGoroutine())
	})
	// /debug/gc runs two collections (the first frees garbage, the second
	// shrinks the stacks the first found oversized) and returns freed
	// memory to the OS: what the footprint settles to without new work.
	mux.HandleFunc("/debug/gc", func(w http.ResponseWriter, _ *http.Request) {
		runtime.GC()
		debug.FreeOSMemory()
		fmt.Fprintln(w, "ok")
	})
	return mux
}
