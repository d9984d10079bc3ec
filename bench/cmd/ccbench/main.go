// Command ccbench measures ccproxy against no relay (direct), HAProxy and
// socat on 127.0.0.1, side by side, and writes bench/RESULTS.md: bulk
// throughput after a TLS handshake, 64-byte round-trip latency, new TLS
// connections per second, first-byte latency and memory with idle
// connections held. With -profile it also runs ccproxy's relay in process
// (bench/cmd/ccrelay) and adds its CPU and heap profiles.
//
// Every test starts a fresh upstream server (this program re-executed with
// the argument "upstream") and a fresh relay, so no test inherits another's
// heap or sockets.
//
//	ccbench -ccproxy bin/ccproxy -harness bin/ccrelay -profile -out bench/RESULTS.md
//	ccbench -relays direct,ccproxy -bulk-mib 64 -rtt 2000 -rate-time 1s -idle 100   # a quick look
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ccproxy-dev/ccproxy/bench/internal/load"
	"github.com/ccproxy-dev/ccproxy/bench/internal/procstat"
	"github.com/ccproxy-dev/ccproxy/bench/internal/report"
	"github.com/ccproxy-dev/ccproxy/bench/internal/stats"
	"github.com/ccproxy-dev/ccproxy/bench/internal/targets"
	"github.com/ccproxy-dev/ccproxy/bench/internal/upstream"
	"github.com/ccproxy-dev/ccproxy/bench/internal/wire"
)

func main() {
	var err error
	switch {
	case len(os.Args) > 2 && os.Args[1] == "upstream" && os.Args[2] == "lbclose":
		err = runLBClose()
	case len(os.Args) > 1 && os.Args[1] == "upstream":
		err = runUpstream()
	case len(os.Args) > 1 && os.Args[1] == "drive":
		err = runDrive(os.Args[2:])
	case len(os.Args) > 1 && os.Args[1] == "gocopy":
		err = runGoCopy(os.Args[2:])
	default:
		err = run()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "ccbench:", err)
		os.Exit(1)
	}
}

// runUpstream is the upstream server process: it prints its address and
// serves until SIGTERM.
func runUpstream() error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	cfg, err := wire.ServerTLSConfig()
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	fmt.Printf("listening on %s\n", ln.Addr())
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	return (&upstream.Server{TLS: cfg, Logger: log}).Serve(ctx, ln)
}

// runLBClose is the storm's upstream process: every connection is closed
// right after its ClientHello (upstream.CloseAfterHello).
func runLBClose() error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	fmt.Printf("listening on %s\n", ln.Addr())
	return upstream.CloseAfterHello{}.Serve(ctx, ln)
}

// runDrive is a load on its own, for profiling a relay started by hand:
// "ccbench drive storm|rate ADDR DURATION" runs the storm or the
// connection-rate client against ADDR and prints what it counted.
func runDrive(args []string) error {
	if len(args) != 3 {
		return errors.New("usage: ccbench drive storm|rate ADDR DURATION")
	}
	dur, err := time.ParseDuration(args[2])
	if err != nil {
		return fmt.Errorf("drive: %w", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	d := &load.Dialer{Addr: args[1]}
	var r load.Rate
	switch args[0] {
	case "storm":
		r = load.Storm(ctx, d, 8, dur)
	case "rate":
		r = load.ConnRate(ctx, d, 8, dur)
	default:
		return fmt.Errorf("drive: unknown load %q", args[0])
	}
	fmt.Printf("%s: %d connections (%.0f/s), %d errors, first: %v\n", args[0], r.Conns, r.PerSecond(), r.Errors, r.FirstErr)
	return nil
}

type config struct {
	relays       []targets.Kind
	opts         targets.Options
	bulk         int64
	rtt, rttSize int
	bulkRounds   int
	rateTime     time.Duration
	rateRounds   int
	rateWorkers  int
	stormTime    time.Duration
	stormRounds  int
	tests        map[string]bool
	firstByte    int
	idle         []int
	idleWorkers  int
	socatIdleMax int
	profile      bool
	profileDir   string
	out          string
	self         string
}

func run() error {
	var (
		c         config
		relays    = flag.String("relays", "direct,ccproxy,ccproxy-traced,haproxy,gocopy,socat", "relays to measure, in table order (direct, ccproxy, ccproxy-traced, haproxy, gocopy, socat, ccrelay)")
		bulkMiB   = flag.Int64("bulk-mib", 1024, "bulk transfer size each way, MiB (sent up, then down, on one connection)")
		idle      = flag.String("idle", "1000,10000", "idle-connection counts to measure memory at (the largest is capped by the open-file limit)")
		workDir   = flag.String("workdir", "", "directory for logs, configs and profiles (default: a new temporary directory)")
		timeLimit = flag.Duration("time-limit", 9*time.Minute, "abort the whole run after this long")
		tests     = flag.String("tests", "bulk,rtt,firstbyte,rate,idle,storm", "tests to run (bulk, rtt, firstbyte, rate, idle, storm)")
	)
	flag.StringVar(&c.opts.CCProxy, "ccproxy", "", "ccproxy binary (go build -o ... ./cmd/ccproxy)")
	flag.StringVar(&c.opts.Harness, "harness", "", "ccrelay binary (go build -o ... ./bench/cmd/ccrelay), for -profile")
	flag.StringVar(&c.opts.HAProxy, "haproxy", "haproxy", "haproxy binary")
	flag.StringVar(&c.opts.Socat, "socat", "socat", "socat binary")
	flag.IntVar(&c.bulkRounds, "bulk-rounds", 2, "bulk rounds per relay, interleaved; the best counts")
	flag.IntVar(&c.rateRounds, "rate-rounds", 3, "connection-rate rounds per relay, interleaved; the median counts")
	flag.IntVar(&c.rtt, "rtt", 20000, "round trips to time")
	flag.IntVar(&c.rttSize, "rtt-size", 64, "round-trip message size, bytes")
	flag.DurationVar(&c.rateTime, "rate-time", 2*time.Second, "how long each connection-rate round opens new connections")
	flag.IntVar(&c.rateWorkers, "rate-workers", 8, "concurrent clients in the rate test")
	flag.DurationVar(&c.stormTime, "storm-time", 2*time.Second, "how long each storm round attempts failing connections")
	flag.IntVar(&c.stormRounds, "storm-rounds", 3, "storm rounds per relay, interleaved; the median counts")
	flag.IntVar(&c.firstByte, "first-byte", 1000, "sequential connections timed for first-byte latency")
	flag.IntVar(&c.idleWorkers, "idle-workers", 8, "concurrent clients opening idle connections")
	flag.IntVar(&c.socatIdleMax, "socat-idle-max", 1000, "largest idle count for socat (one process per connection, ~2.5 MiB each)")
	flag.BoolVar(&c.profile, "profile", false, "also profile ccproxy's relay in process (needs -harness and go on PATH)")
	flag.StringVar(&c.out, "out", "", "write the Markdown report here (it is printed either way)")
	flag.Parse()

	c.tests = map[string]bool{}
	for _, t := range strings.Split(*tests, ",") {
		t = strings.TrimSpace(t)
		switch t {
		case "bulk", "rtt", "firstbyte", "rate", "idle", "storm":
			c.tests[t] = true
		case "":
		default:
			return fmt.Errorf("-tests: unknown test %q", t)
		}
	}
	for _, r := range strings.Split(*relays, ",") {
		k := targets.Kind(strings.TrimSpace(r))
		switch k {
		case targets.Direct, targets.CCProxy, targets.CCProxyTraced, targets.HAProxy, targets.GoCopy, targets.Socat, targets.Harness:
		default:
			return fmt.Errorf("-relays: unknown relay %q", r)
		}
		c.relays = append(c.relays, k)
	}
	if ((slicesContains(c.relays, targets.CCProxy) || slicesContains(c.relays, targets.CCProxyTraced)) && c.opts.CCProxy == "") ||
		((slicesContains(c.relays, targets.Harness) || c.profile) && c.opts.Harness == "") {
		return errors.New("-ccproxy (and -harness for -profile or the ccrelay relay) must name the binaries")
	}
	for _, p := range []*string{&c.opts.CCProxy, &c.opts.Harness, &c.opts.HAProxy, &c.opts.Socat} {
		if *p == "" {
			continue
		}
		abs, err := exec.LookPath(*p)
		if err != nil {
			return fmt.Errorf("relay binary: %w", err)
		}
		if abs, err = filepath.Abs(abs); err != nil {
			return err
		}
		*p = abs
	}
	if *bulkMiB < 1 || c.rtt < 1 || c.firstByte < 1 || c.bulkRounds < 1 || c.rateRounds < 1 {
		return errors.New("-bulk-mib, -bulk-rounds, -rtt, -rate-rounds and -first-byte must be at least 1")
	}
	c.bulk = *bulkMiB << 20

	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("reading the open-file limit: %w", err)
	}
	fdLimit := int(min(lim.Max, 1<<20))
	// A relay holds two sockets per connection; keep a margin for its
	// listener, poller and logs.
	relayConns := (fdLimit - 64) / 2
	c.opts.FDLimit = fdLimit
	c.opts.MaxConns = relayConns
	var notes []string
	for _, f := range strings.Split(*idle, ",") {
		if strings.TrimSpace(f) == "" {
			continue
		}
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return fmt.Errorf("-idle: %q is not a positive count", f)
		}
		if capped := relayConns - 8; n > capped {
			notes = append(notes, fmt.Sprintf("Idle test: %s connections asked, %s measured: the open-file limit is %s per process (hard, cannot be raised here) and a relay needs two sockets per connection.", fmtCount(n), fmtCount(capped), fmtCount(fdLimit)))
			n = capped
		}
		c.idle = append(c.idle, n)
	}

	self, err := os.Executable()
	if err != nil {
		return err
	}
	c.self = self
	c.opts.Self = self
	if *workDir == "" {
		if *workDir, err = os.MkdirTemp("", "ccbench-"); err != nil {
			return err
		}
	} else if err := os.MkdirAll(*workDir, 0o755); err != nil {
		return err
	}
	c.opts.WorkDir = *workDir
	c.profileDir = filepath.Join(*workDir, "profiles")
	fmt.Fprintf(os.Stderr, "ccbench: logs and profiles in %s\n", *workDir)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *timeLimit)
	defer cancel()

	start := time.Now()
	res := &report.Results{
		Machine:   report.ThisMachine(fdLimit),
		Primary:   string(targets.CCProxy),
		Notes:     notes,
		Obstacles: obstacles,
	}
	if len(c.idle) > 0 {
		res.IdleLow = c.idle[0]
		res.IdleHigh = c.idle[len(c.idle)-1]
		if res.IdleHigh == res.IdleLow {
			res.IdleHigh = 0
		}
	}
	if !slicesContains(c.relays, targets.CCProxy) && len(c.relays) > 0 {
		res.Primary = string(c.relays[len(c.relays)-1])
	}
	res.Settings = settings(&c)
	byKind := map[targets.Kind]*report.Relay{}
	for _, k := range c.relays {
		r := &report.Relay{Name: string(k)}
		byKind[k] = r
		res.Relays = append(res.Relays, r)
	}

	// Repeated tests run their rounds interleaved over the relays, so a
	// burst of other work on the machine hits one round of each rather
	// than every round of one relay.
	plan := []struct {
		key, name string
		rounds    int
		fn        func(context.Context, *config, targets.Kind, *report.Relay) error
	}{
		{"bulk", "bulk", c.bulkRounds, testBulk},
		{"rtt", "round trip", 1, testRTT},
		{"firstbyte", "first byte", 1, testFirstByte},
		{"rate", "connection rate", c.rateRounds, testRate},
		{"storm", "storm", c.stormRounds, testStorm},
		{"idle", "idle", 1, testIdle},
	}
	for _, t := range plan {
		if !c.tests[t.key] {
			continue
		}
		for round := range t.rounds {
			for _, k := range c.relays {
				if ctx.Err() != nil {
					break
				}
				fmt.Fprintf(os.Stderr, "ccbench: %-15s round %d/%d %s\n", t.name, round+1, t.rounds, k)
				if err := t.fn(ctx, &c, k, byKind[k]); err != nil {
					fmt.Fprintf(os.Stderr, "ccbench: %s via %s: %v\n", t.name, k, err)
					byKind[k].Errors = append(byKind[k].Errors, fmt.Sprintf("%s: %v", t.name, err))
				}
			}
		}
	}
	if c.profile && ctx.Err() == nil {
		fmt.Fprintln(os.Stderr, "ccbench: profiling ccrelay")
		profs, notes, err := profileHarness(ctx, &c)
		if err != nil {
			res.Notes = append(res.Notes, "Profiling failed: "+err.Error())
		}
		res.Profiles = profs
		res.Notes = append(res.Notes, notes...)
	}
	if ctx.Err() != nil {
		res.Notes = append(res.Notes, fmt.Sprintf("The run was cut short: %v.", context.Cause(ctx)))
	}
	res.Notes = append(res.Notes, methodNotes(&c)...)
	res.Elapsed = time.Since(start)

	md := res.Markdown()
	fmt.Print(md)
	if c.out != "" {
		if err := os.WriteFile(c.out, []byte(md), 0o644); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "ccbench: wrote %s\n", c.out)
	}
	return nil
}

func slicesContains(ks []targets.Kind, k targets.Kind) bool {
	for _, x := range ks {
		if x == k {
			return true
		}
	}
	return false
}

func fmtCount(n int) string {
	s := strconv.Itoa(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

func settings(c *config) []string {
	var idle []string
	for _, n := range c.idle {
		idle = append(idle, fmtCount(n))
	}
	return []string{
		fmt.Sprintf("bulk: %d MiB up, then %d MiB down, sequentially on one connection (TLS 1.3 handshake through the relay first, then plain TCP); best of %d rounds", c.bulk>>20, c.bulk>>20, c.bulkRounds),
		fmt.Sprintf("round trip: %s ping-pongs of %d bytes on one connection after its handshake (plus an unrecorded warm-up of %s)", fmtCount(c.rtt), c.rttSize, fmtCount(min(c.rtt/10, 1000))),
		fmt.Sprintf("connection rate: %d concurrent clients for %s, median of %d rounds; each connection a full TLS 1.3 handshake (X25519MLKEM768, ECDSA P-256 certificate), one protected exchange, close", c.rateWorkers, c.rateTime, c.rateRounds),
		fmt.Sprintf("storm: %d concurrent clients for %s, median of %d rounds, against an upstream that reads the ClientHello and closes (a load balancer with no backend): each attempt a TLS 1.3 ClientHello answered by EOF, as `contrast set` retries it; ccproxy-traced has its trace file on with the default storm folding (each client's run writes its first 32 attempts, each change of mode, powers of two and its last in full, and counts the rest in its run summary)", c.rateWorkers, c.stormTime, c.stormRounds),
		fmt.Sprintf("first byte: %s sequential connections; time from the client starting its ClientHello write to the upstream application reading it (wall clock, same machine)", fmtCount(c.firstByte)),
		fmt.Sprintf("idle: %s connections held (opened by %d concurrent clients), each after its handshake, %d protected exchanges and one raw byte each way; memory read 2 s after the last one opened; socat up to %s", strings.Join(idle, " then "), c.idleWorkers, load.SteadyRounds+1, fmtCount(c.socatIdleMax)),
		fmt.Sprintf("relays: ccproxy `--idle-timeout 0 --max-connections 20000` (inspection on, tracing off as by default; ccproxy-traced adds `--trace-file`, one OTLP/JSON span line per connection); HAProxy 2.6 TCP mode, `option splice-auto`, `maxconn %d` (two descriptors per connection must fit the open-file limit); gocopy, a plain Go relay (`ccbench gocopy`: accept, dial, one io.Copy per direction, CloseWrite on EOF); socat `-d TCP-LISTEN:PORT,fork,reuseaddr,bind=127.0.0.1 TCP:UPSTREAM`", c.opts.MaxConns),
	}
}

func methodNotes(c *config) []string {
	return []string{
		"Each test starts a fresh upstream (a Go TLS 1.3 server) and a fresh relay process; client, relay and upstream all share the machine's CPUs, so a relay's own CPU cost also slows its endpoints.",
		"Relay CPU is user+system time of the relay's processes (socat: including its reaped children) over the test, from /proc/PID/stat.",
		"RSS sums VmRSS over the relay's processes, so socat's shared pages count once per process; PSS (from smaps_rollup) splits them and is the fairer total for socat.",
	}
}

// withRelay starts a fresh upstream and relay of kind, runs fn, and stops both.
func withRelay(ctx context.Context, c *config, kind targets.Kind, opts targets.Options, fn func(r *targets.Relay) error) error {
	up, err := targets.StartUpstream(ctx, c.self, c.opts.WorkDir)
	if err != nil {
		return err
	}
	defer up.Stop()
	r, err := targets.Start(ctx, kind, up.Addr, opts)
	if err != nil {
		return err
	}
	defer r.Stop()
	return fn(r)
}

// relayCPU runs fn and returns the relay's CPU time over it (0 for direct).
func relayCPU(r *targets.Relay, fn func() error) (time.Duration, error) {
	if r.PID() == 0 {
		return 0, fn()
	}
	before, err := r.Usage()
	if err != nil {
		return 0, err
	}
	if err := fn(); err != nil {
		return 0, err
	}
	// Let a forking relay reap the children of closed connections, so
	// their CPU lands in the parent's totals.
	time.Sleep(300 * time.Millisecond)
	after, err := r.Usage()
	if err != nil {
		return 0, err
	}
	return after.CPU - before.CPU, nil
}

func testBulk(ctx context.Context, c *config, kind targets.Kind, out *report.Relay) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	return withRelay(ctx, c, kind, c.opts, func(r *targets.Relay) error {
		var b load.Bulk
		cpu, err := relayCPU(r, func() (err error) {
			b, err = load.Throughput(ctx, &load.Dialer{Addr: r.Addr}, c.bulk)
			return err
		})
		if err != nil {
			return err
		}
		out.Bulk = append(out.Bulk, report.Bulk{Bytes: b.Bytes, Upload: b.Upload, Download: b.Download, RelayCPU: cpu})
		return nil
	})
}

func testRTT(ctx context.Context, c *config, kind targets.Kind, out *report.Relay) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	return withRelay(ctx, c, kind, c.opts, func(r *targets.Relay) error {
		rtts, err := load.PingPong(ctx, &load.Dialer{Addr: r.Addr}, c.rtt, c.rttSize)
		if err != nil {
			return err
		}
		s := stats.Summarize(rtts)
		out.RTT = &s
		return nil
	})
}

func testFirstByte(ctx context.Context, c *config, kind targets.Kind, out *report.Relay) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	return withRelay(ctx, c, kind, c.opts, func(r *targets.Relay) error {
		fb, err := load.FirstByte(ctx, &load.Dialer{Addr: r.Addr}, c.firstByte)
		if err != nil {
			return err
		}
		s := stats.Summarize(fb)
		out.FirstByte = &s
		return nil
	})
}

func testRate(ctx context.Context, c *config, kind targets.Kind, out *report.Relay) error {
	ctx, cancel := context.WithTimeout(ctx, c.rateTime+time.Minute)
	defer cancel()
	return withRelay(ctx, c, kind, c.opts, func(r *targets.Relay) error {
		var rate load.Rate
		cpu, err := relayCPU(r, func() error {
			rate = load.ConnRate(ctx, &load.Dialer{Addr: r.Addr}, c.rateWorkers, c.rateTime)
			return nil
		})
		if err != nil {
			return err
		}
		out.Rate = append(out.Rate, report.Rate{PerSecond: rate.PerSecond(), Conns: rate.Conns, Errors: rate.Errors, RelayCPU: cpu})
		if rate.Errors > 0 {
			return fmt.Errorf("%d of %d connections failed, first: %v", rate.Errors, rate.Errors+rate.Conns, rate.FirstErr)
		}
		return nil
	})
}

// testStorm attempts failing connections through the relay for
// c.stormTime: its upstream closes each right after the ClientHello.
// Only relays that stand for a deployment take part: direct has no relay
// CPU to count, and socat's process per connection is measured enough by
// the rate test.
func testStorm(ctx context.Context, c *config, kind targets.Kind, out *report.Relay) error {
	if kind == targets.Direct || kind == targets.Socat {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, c.stormTime+time.Minute)
	defer cancel()
	up, err := targets.StartUpstream(ctx, c.self, c.opts.WorkDir, "lbclose")
	if err != nil {
		return err
	}
	defer up.Stop()
	r, err := targets.Start(ctx, kind, up.Addr, c.opts)
	if err != nil {
		return err
	}
	defer r.Stop()
	var st load.Rate
	cpu, err := relayCPU(r, func() error {
		st = load.Storm(ctx, &load.Dialer{Addr: r.Addr}, c.rateWorkers, c.stormTime)
		return nil
	})
	if err != nil {
		return err
	}
	out.Storm = append(out.Storm, report.Rate{PerSecond: st.PerSecond(), Conns: st.Conns, Errors: st.Errors, RelayCPU: cpu})
	if st.Errors > 0 {
		return fmt.Errorf("storm: %d of %d attempts did not fail as a closing load balancer makes them fail, first: %v", st.Errors, st.Errors+st.Conns, st.FirstErr)
	}
	return nil
}

// idleRun opens c.idle connections step by step through r and samples the
// relay at each step. at, if set, is called at each measured step (the
// profiler takes its heap snapshot there).
func idleRun(ctx context.Context, c *config, kind targets.Kind, r *targets.Relay, at func(n int)) []report.IdlePoint {
	pool := &load.Pool{D: &load.Dialer{Addr: r.Addr}}
	defer pool.Close()
	var points []report.IdlePoint
	// The footprint before any connection, for the per-connection slope.
	if u, err := r.Usage(); err == nil {
		points = append(points, report.IdlePoint{Usage: u})
	}
	for _, n := range c.idle {
		if kind == targets.Socat && n > c.socatIdleMax {
			points = append(points, report.IdlePoint{Target: n, Skipped: fmt.Sprintf("not run: socat forks a process per connection (~2.5 MiB RSS each); capped at %s (-socat-idle-max)", fmtCount(c.socatIdleMax))})
			continue
		}
		p := report.IdlePoint{Target: n}
		if err := pool.Grow(ctx, n, c.idleWorkers); err != nil {
			p.Err = err.Error()
		}
		p.Established = pool.Len()
		select {
		case <-time.After(2 * time.Second):
		case <-ctx.Done():
		}
		u, err := r.Usage()
		if err != nil && p.Err == "" {
			p.Err = err.Error()
		}
		p.Usage = u
		if at != nil {
			at(p.Established)
		}
		points = append(points, p)
		if p.Err != "" {
			break
		}
	}
	return points
}

func testIdle(ctx context.Context, c *config, kind targets.Kind, out *report.Relay) error {
	if kind == targets.Direct || len(c.idle) == 0 {
		return nil // no relay process to measure
	}
	ctx, cancel := context.WithTimeout(ctx, 4*time.Minute)
	defer cancel()
	return withRelay(ctx, c, kind, c.opts, func(r *targets.Relay) error {
		out.Idle = idleRun(ctx, c, kind, r, nil)
		for _, p := range out.Idle {
			if p.Err != "" {
				return fmt.Errorf("at %s connections: %s", fmtCount(p.Established), p.Err)
			}
		}
		return nil
	})
}

// profileHarness runs the bulk and idle tests against ccrelay with CPU
// profiles, takes heap profiles at each idle step and summarizes them with
// go tool pprof.
func profileHarness(ctx context.Context, c *config) ([]report.Profile, []string, error) {
	if err := os.MkdirAll(c.profileDir, 0o755); err != nil {
		return nil, nil, err
	}
	var profs []report.Profile
	var notes []string

	bulkCPU := filepath.Join(c.profileDir, "bulk-cpu.pprof")
	opts := c.opts
	opts.HarnessArgs = []string{"-cpuprofile", bulkCPU}
	var bulk load.Bulk
	err := withRelay(ctx, c, targets.Harness, opts, func(r *targets.Relay) (err error) {
		bulk, err = load.Throughput(ctx, &load.Dialer{Addr: r.Addr}, c.bulk)
		return err
	})
	if err != nil {
		return nil, nil, fmt.Errorf("bulk run: %w", err)
	}
	notes = append(notes, fmt.Sprintf("ccrelay (profiled) bulk: upload %.2f Gbit/s, download %.2f Gbit/s.",
		float64(bulk.Bytes)*8/bulk.Upload.Seconds()/1e9, float64(bulk.Bytes)*8/bulk.Download.Seconds()/1e9))
	profs = append(profs, pprofTop(ctx, "CPU during the bulk transfer (flat)", bulkCPU, "-top", "-nodecount=20"))

	if len(c.idle) == 0 {
		return profs, notes, nil
	}
	idleCPU := filepath.Join(c.profileDir, "idle-cpu.pprof")
	port, err := freePort()
	if err != nil {
		return profs, notes, err
	}
	pprofAddr := fmt.Sprintf("127.0.0.1:%d", port)
	opts.HarnessArgs = []string{"-cpuprofile", idleCPU, "-pprof-listen", pprofAddr}
	var heaps []string
	err = withRelay(ctx, c, targets.Harness, opts, func(r *targets.Relay) error {
		points := idleRun(ctx, c, targets.Harness, r, func(n int) {
			path := filepath.Join(c.profileDir, fmt.Sprintf("idle-heap-%d.pprof", n))
			if err := fetch(ctx, "http://"+pprofAddr+"/debug/pprof/heap", path); err != nil {
				notes = append(notes, fmt.Sprintf("heap profile at %d: %v", n, err))
				return
			}
			heaps = append(heaps, path)
			g, _ := get(ctx, "http://"+pprofAddr+"/debug/goroutines")
			mem, _ := get(ctx, "http://"+pprofAddr+"/debug/pprof/heap?debug=1")
			notes = append(notes, fmt.Sprintf("ccrelay (profiled) at %s idle connections: %s goroutines; %s.", fmtCount(n), strings.TrimSpace(string(g)), memStats(mem)))
			// What of it is garbage and oversized stacks: collect, shrink,
			// return to the OS, and look again.
			if _, err := get(ctx, "http://"+pprofAddr+"/debug/gc"); err != nil {
				notes = append(notes, fmt.Sprintf("forced GC at %d: %v", n, err))
				return
			}
			time.Sleep(time.Second)
			mem, _ = get(ctx, "http://"+pprofAddr+"/debug/pprof/heap?debug=1")
			if u, err := r.Usage(); err == nil {
				notes = append(notes, fmt.Sprintf("ccrelay (profiled) at %s idle connections after a forced GC and FreeOSMemory: RSS %.1f MiB; %s.", fmtCount(n), procstat.MiB(u.RSS), memStats(mem)))
			}
		})
		for _, p := range points {
			notes = append(notes, fmt.Sprintf("ccrelay (profiled) at %s of %s idle connections: RSS %.1f MiB, %d fds of which %d pipes%s.",
				fmtCount(p.Established), fmtCount(p.Target), procstat.MiB(p.Usage.RSS), p.Usage.FDs, p.Usage.Pipes, errSuffix(p.Err)))
		}
		return nil
	})
	if err != nil {
		return profs, notes, fmt.Errorf("idle run: %w", err)
	}
	// Cumulative: which of ccproxy's steps a new connection's CPU goes to
	// (dial, inspection, splice setup, stack growth).
	profs = append(profs, pprofTop(ctx, "CPU while opening the idle connections (cumulative)", idleCPU, "-top", "-cum", "-nodecount=40"))
	for _, h := range heaps {
		profs = append(profs, pprofTop(ctx, "Heap in use, "+strings.TrimSuffix(filepath.Base(h), ".pprof"), h, "-top", "-nodecount=15", "-sample_index=inuse_space"))
	}
	return profs, notes, nil
}

func errSuffix(e string) string {
	if e == "" {
		return ""
	}
	return " (stopped: " + e + ")"
}

// memStats picks the runtime's memory lines from a debug=1 heap profile.
func memStats(b []byte) string {
	var parts []string
	for line := range strings.Lines(string(b)) {
		for _, k := range []string{"# HeapInuse = ", "# Stack = ", "# Sys = "} {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), k); ok {
				parts = append(parts, strings.TrimPrefix(k, "# ")+v)
			}
		}
	}
	if len(parts) == 0 {
		return "no runtime memory statistics"
	}
	return strings.Join(parts, ", ")
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func get(ctx context.Context, url string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return io.ReadAll(resp.Body)
}

func fetch(ctx context.Context, url, path string) error {
	b, err := get(ctx, url)
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

// pprofTop runs go tool pprof on a profile; a failure becomes the text.
func pprofTop(ctx context.Context, title, profile string, args ...string) report.Profile {
	cmd := exec.CommandContext(ctx, "go", append(append([]string{"tool", "pprof"}, args...), profile)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return report.Profile{Title: title, Text: fmt.Sprintf("go tool pprof failed: %v\n%s", err, out.String())}
	}
	return report.Profile{Title: title + " — " + filepath.Base(profile), Text: out.String()}
}
