//go:build soak

package soak_test

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestSoak is the long soak (make soak): 10,000 concurrent relayed
// connections with random traffic and half-closes for a set time, every
// byte verified, then goroutines and descriptors back to baseline.
//
//	CCPROXY_SOAK_CONNS     concurrent connections (10000)
//	CCPROXY_SOAK_DURATION  how long new connections start (2m)
//	CCPROXY_SOAK_MAX_BYTES largest payload per direction (4194304)
//	CCPROXY_SOAK_TRACE     trace file, "off" for none (/dev/null: spans are built and encoded, not kept)
//	CCPROXY_SOAK_RESULTS   write the results as Markdown to this file (make soak: bench/soak/RESULTS.md)
func TestSoak(t *testing.T) {
	cfg := config{
		workers:   envInt(t, "CCPROXY_SOAK_CONNS", 10000),
		duration:  envDuration(t, "CCPROXY_SOAK_DURATION", 2*time.Minute),
		maxBytes:  int64(envInt(t, "CCPROXY_SOAK_MAX_BYTES", 4<<20)),
		traceFile: os.DevNull,
	}
	switch v := os.Getenv("CCPROXY_SOAK_TRACE"); v {
	case "":
	case "off":
		cfg.traceFile = ""
	default:
		cfg.traceFile = v
	}
	o := runSoak(t, cfg)
	fmt.Print(o.summary()) // on stdout too, for make soak without -v
	if path := os.Getenv("CCPROXY_SOAK_RESULTS"); path != "" {
		// The other runs (TestSoakBinary, TestStorm) keep their sections.
		text := o.markdown()
		if old, err := os.ReadFile(path); err == nil {
			if i := strings.Index(string(old), "\n## "); i >= 0 {
				text += string(old[i:])
			}
		}
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Errorf("writing %s: %v", path, err)
		} else {
			t.Logf("results written to %s", path)
		}
	}
	o.report(t)
}

func envInt(t *testing.T, key string, def int) int {
	v := os.Getenv(key)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		t.Fatalf("%s=%q: want a positive integer", key, v)
	}
	return n
}

func envDuration(t *testing.T, key string, def time.Duration) time.Duration {
	v := os.Getenv(key)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		t.Fatalf("%s=%q: want a positive duration (e.g. 5m)", key, v)
	}
	return d
}

// markdown is RESULTS.md: what ran, where, and what it measured.
func (o *outcome) markdown() string {
	var b strings.Builder
	b.WriteString("# Soak results\n\n")
	b.WriteString("Written by `make soak` (`TestSoak` in package soak, build tag `soak`). Every figure below is measured by that run; rerun to refresh.\n\n")
	fmt.Fprintf(&b, "- run: %s – %s\n", o.started.UTC().Format(time.RFC3339), o.finish.UTC().Format(time.RFC3339))
	host, _ := os.Hostname()
	kernel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	fmt.Fprintf(&b, "- machine: %s, %s/%s, %d CPUs (GOMAXPROCS %d), Linux %s, %s\n",
		host, runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.GOMAXPROCS(0), strings.TrimSpace(string(kernel)), runtime.Version())
	fmt.Fprintf(&b, "- setup: one process; a checking upstream, the relay wired as relay mode wires it (proxy, watcher, admin metrics, tracing to `%s`), one inspecting and one plain route, all on loopback\n", orNone(o.cfg.traceFile))
	fmt.Fprintf(&b, "- traffic: random payloads up to %d bytes per direction, random chunking and pauses, modes concurrent / request-response / server-first (half-closes both ways round), a TLS ClientHello first on every other connection; each direction ends with its SHA-256 and a FIN\n\n", o.cfg.maxBytes)
	if o.cfg.workers < o.requested {
		fmt.Fprintf(&b, "**Concurrency limited by the machine**: %d connections were requested; RLIMIT_NOFILE here is %d (hard %d) and a connection streaming both ways can cost %d descriptors in this one process (client socket, upstream socket, the relay's two, and a splice pipe of two descriptors per direction while bytes move), so %d ran. Raise the hard limit (`ulimit -Hn`, or a container's `--ulimit nofile=`) to run the full figure.\n\n",
			o.requested, o.fdSoft, o.fdHard, fdsPerConn, o.cfg.workers)
	}
	b.WriteString("```\n")
	b.WriteString(o.summary())
	b.WriteString("```\n")
	return b.String()
}

func orNone(s string) string {
	if s == "" {
		return "nowhere (tracing off)"
	}
	return s
}
