//go:build soak

package soak_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestStorm is the storm run of make soak: the ccproxy binary, as relay
// mode runs in the pod (tracing on, admin metrics, the pod's 50Mi as
// GOMEMLIMIT=45MiB, which is what ccproxy sets itself from a memory.max of
// 50Mi), takes thousands of failing handshakes per second for a minute
// while one healthy client keeps a TLS connection busy with round trips
// through it and opens a fresh one every second. Everything runs on
// loopback; the storm is bounded by its rate and its duration.
//
// The failing clients rotate through what a broken deployment produces:
// connect and close (client_aborted), plain HTTP (client_not_tls), and a
// real ClientHello that the upstream closes on (lb_closed_early), resets
// (lb_closed_early), answers with an internal_error alert (issuer_error,
// whose probe result is cached per upstream) or never answers until the
// client gives up (issuer_timeout).
//
// It passes when the relay's RSS never reaches 50 MiB, every healthy round
// trip and every healthy new connection succeeded, and the relay's
// goroutines and descriptors came back after the storm.
//
//	CCPROXY_STORM_RATE      failing connections started per second (3000)
//	CCPROXY_STORM_DURATION  how long the storm lasts (1m)
//	CCPROXY_STORM_WORKERS   concurrent failing clients (256)
//	CCPROXY_STORM_MEMLIMIT  GOMEMLIMIT of the relay ("45MiB"; "off" for none)
//	CCPROXY_SOAK_RESULTS    the results go into this file's "## Storm" section
func TestStorm(t *testing.T) {
	cfg := stormConfig{
		rate:     envInt(t, "CCPROXY_STORM_RATE", 3000),
		duration: envDuration(t, "CCPROXY_STORM_DURATION", time.Minute),
		workers:  envInt(t, "CCPROXY_STORM_WORKERS", 256),
		memLimit: "45MiB",
	}
	if v := os.Getenv("CCPROXY_STORM_MEMLIMIT"); v != "" {
		cfg.memLimit = v
	}
	o := runStorm(t, cfg)
	fmt.Print(o.summary())
	if path := os.Getenv("CCPROXY_SOAK_RESULTS"); path != "" {
		if err := writeSection(path, "## Storm", o.markdown()); err != nil {
			t.Errorf("writing %s: %v", path, err)
		} else {
			t.Logf("storm results written to %s", path)
		}
	}
	for _, p := range o.problems {
		t.Error(p)
	}
}

type stormConfig struct {
	rate     int
	duration time.Duration
	workers  int
	memLimit string
}

type stormOutcome struct {
	cfg              stormConfig
	started, finish  time.Time
	attempted        int64
	byKind           [stormKinds]int64
	peak             memSample
	base, end        memSample
	samples          []memSample // one per second
	healthyRTTs      []time.Duration
	healthyErrs      int64
	healthyFirstErr  string
	maxGap           time.Duration
	newConnsOK       int64
	newConnsFailed   int64
	modes            map[string]float64
	baseFD, endFD    int
	peakFD           int
	baseThr, peakThr int
	problems         []string
}

type memSample struct {
	at              time.Duration
	rss, anon, file int64
	threads, fds    int
}

// The failing clients' kinds, in rotation.
const (
	stormAbort  = iota // connect, close
	stormHTTP          // plain HTTP
	stormClose         // ClientHello; the upstream closes
	stormReset         // ClientHello; the upstream resets
	stormAlert         // ClientHello; the upstream sends internal_error
	stormSilent        // ClientHello; the upstream stays silent, the client gives up
	stormKinds
)

var stormKindNames = [stormKinds]string{"connect and close", "plain HTTP", "ClientHello, upstream closes", "ClientHello, upstream resets", "ClientHello, upstream alerts internal_error", "ClientHello, upstream silent until the client gives up (200 ms)"}

func runStorm(t *testing.T, cfg stormConfig) *stormOutcome {
	o := &stormOutcome{cfg: cfg}
	bin := buildCCProxy(t)
	hello := clientHello(t)

	// The storm's upstream: it reads the ClientHello, then fails as the
	// client's first byte asks (the client picks by its kind).
	stormUp := listenLoop(t, func(c net.Conn) {
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		hdr := make([]byte, 5)
		if _, err := io.ReadFull(c, hdr); err != nil || hdr[0] != 22 {
			return // not a handshake record (HTTP): close at once
		}
		body := make([]byte, int(hdr[3])<<8|int(hdr[4]))
		if _, err := io.ReadFull(c, body); err != nil {
			return
		}
		// The client's random (bytes 6..38 of the ClientHello body)
		// starts with its kind, so the upstream knows what to do.
		kind := 0
		if len(body) > 6 {
			kind = int(body[6])
		}
		switch kind {
		case stormReset:
			c.(*net.TCPConn).SetLinger(0)
		case stormAlert:
			c.Write([]byte{21, 3, 3, 0, 2, 2, 80})
		case stormSilent:
			io.Copy(io.Discard, c)
		}
	})
	// The healthy client's upstream: a TLS echo server.
	cert := selfSignedCert(t)
	healthyUp := listenLoop(t, func(c net.Conn) {
		defer c.Close()
		tc := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{cert}})
		if tc.Handshake() != nil {
			return
		}
		io.Copy(tc, tc)
	})

	stormPort, healthyPort, adminPort := freePort(t), freePort(t), freePort(t)
	stormAddr := fmt.Sprintf("127.0.0.1:%d", stormPort)
	healthyAddr := fmt.Sprintf("127.0.0.1:%d", healthyPort)
	args := []string{
		"--forward", stormAddr + "=" + stormUp,
		"--forward", healthyAddr + "=" + healthyUp,
		"--admin-listen", fmt.Sprintf("127.0.0.1:%d", adminPort),
		"--trace-file", os.DevNull,
		"--log-level", "warn",
	}
	var env []string
	if cfg.memLimit != "off" {
		env = append(env, "GOMEMLIMIT="+cfg.memLimit)
	}
	relay := startRelay(t, bin, args, env, func() error { return waitDial(healthyAddr, 0) })
	defer relay.stop()
	pid, relayLog := relay.pid, &relay.log
	time.Sleep(time.Second)
	o.base = sample(pid, 0)
	o.baseFD, o.baseThr = o.base.fds, o.base.threads

	ctx, cancel := context.WithTimeout(context.Background(), cfg.duration)
	defer cancel()
	o.started = time.Now()

	// The sampler: peak every 50 ms, a line every second.
	var wg sync.WaitGroup
	sampDone := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		next := time.Second
		for {
			select {
			case <-sampDone:
				return
			case <-tick.C:
			}
			s := sample(pid, time.Since(o.started))
			if s.rss > o.peak.rss {
				o.peak = s
			}
			o.peakFD = max(o.peakFD, s.fds)
			o.peakThr = max(o.peakThr, s.threads)
			if s.at >= next {
				o.samples = append(o.samples, s)
				next += time.Second
			}
		}
	}()

	// The healthy client: one TLS connection, a round trip every 10 ms.
	healthyDone := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(healthyDone)
		o.healthy(ctx, healthyAddr)
	}()
	// And a fresh healthy connection every second.
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			if err := healthyOnce(healthyAddr); err != nil {
				atomic.AddInt64(&o.newConnsFailed, 1)
				o.noteHealthyErr(fmt.Sprintf("new connection: %v", err))
			} else {
				atomic.AddInt64(&o.newConnsOK, 1)
			}
		}
	}()

	// The storm: tokens at cfg.rate per second, cfg.workers clients.
	tokens := make(chan int, cfg.workers)
	var stormWG sync.WaitGroup
	for range cfg.workers {
		stormWG.Add(1)
		go func() {
			defer stormWG.Done()
			for kind := range tokens {
				stormOnce(stormAddr, kind, hello)
				atomic.AddInt64(&o.byKind[kind], 1)
			}
		}()
	}
	interval := time.Second / time.Duration(cfg.rate)
	start := time.Now()
	var n int64
feed:
	for {
		due := int64(time.Since(start) / interval)
		for ; n < due; n++ {
			select {
			case tokens <- int(n % stormKinds):
			case <-ctx.Done():
				break feed
			default:
				// Every client is busy: the relay (or this machine) is
				// slower than the rate; skip rather than queue.
			}
		}
		select {
		case <-ctx.Done():
			break feed
		case <-time.After(time.Millisecond):
		}
	}
	close(tokens)
	stormWG.Wait()
	<-healthyDone
	o.finish = time.Now()
	for _, k := range o.byKind {
		o.attempted += k
	}

	// After the storm: descriptors and goroutines settle, memory is read.
	time.Sleep(3 * time.Second)
	close(sampDone)
	wg.Wait()
	o.end = sample(pid, time.Since(o.started))
	o.endFD = o.end.fds
	o.modes = scrapeModes(fmt.Sprintf("http://127.0.0.1:%d/metrics", adminPort))
	o.judge()
	if len(o.problems) > 0 {
		t.Logf("relay log (tail):\n%s", tailString(relayLog.String(), 3000))
	}
	return o
}

func (o *stormOutcome) noteHealthyErr(s string) {
	if atomic.AddInt64(&o.healthyErrs, 1) == 1 {
		o.healthyFirstErr = s
	}
}

// healthy keeps one TLS connection through the relay busy with 64-byte
// round trips, every 10 ms, until ctx ends.
func (o *stormOutcome) healthy(ctx context.Context, addr string) {
	c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"atls:v1:nonce:" + strings.Repeat("ab", 32)}})
	if err != nil {
		o.noteHealthyErr(fmt.Sprintf("dial: %v", err))
		return
	}
	defer c.Close()
	msg, got := make([]byte, 64), make([]byte, 64)
	last := time.Now()
	for ctx.Err() == nil {
		msg[0]++
		c.SetDeadline(time.Now().Add(10 * time.Second))
		start := time.Now()
		if _, err := c.Write(msg); err != nil {
			o.noteHealthyErr(fmt.Sprintf("write: %v", err))
			return
		}
		if _, err := io.ReadFull(c, got); err != nil || got[0] != msg[0] {
			o.noteHealthyErr(fmt.Sprintf("read: %v", err))
			return
		}
		now := time.Now()
		o.healthyRTTs = append(o.healthyRTTs, now.Sub(start))
		o.maxGap = max(o.maxGap, now.Sub(last))
		last = now
		select {
		case <-ctx.Done():
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// healthyOnce opens a new TLS connection through the relay and makes one
// round trip.
func healthyOnce(addr string) error {
	d := &net.Dialer{Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("ping")); err != nil {
		return err
	}
	_, err = io.ReadFull(c, make([]byte, 4))
	return err
}

// stormOnce is one failing client of the given kind.
func stormOnce(addr string, kind int, hello []byte) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	switch kind {
	case stormAbort:
		return
	case stormHTTP:
		c.Write([]byte("GET / HTTP/1.1\r\nHost: coordinator\r\n\r\n"))
	default:
		h := slices.Clone(hello)
		h[5+6] = byte(kind) // the first byte of the random
		c.Write(h)
		if kind == stormSilent {
			c.SetDeadline(time.Now().Add(200 * time.Millisecond))
		}
	}
	io.Copy(io.Discard, c)
}

// clientHello records the first flight of a Go TLS 1.3 client offering
// Contrast's atls ALPN: one handshake record.
func clientHello(t *testing.T) []byte {
	a, b := net.Pipe()
	go func() {
		tls.Client(a, &tls.Config{ServerName: "coordinator", NextProtos: []string{"atls:v1:nonce:" + strings.Repeat("cd", 32), "h2"}}).Handshake()
	}()
	b.SetDeadline(time.Now().Add(5 * time.Second))
	hdr := make([]byte, 5)
	if _, err := io.ReadFull(b, hdr); err != nil {
		t.Fatal(err)
	}
	body := make([]byte, int(hdr[3])<<8|int(hdr[4]))
	if _, err := io.ReadFull(b, body); err != nil {
		t.Fatal(err)
	}
	a.Close()
	b.Close()
	return append(hdr, body...)
}

func selfSignedCert(t *testing.T) tls.Certificate {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "coordinator"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), DNSNames: []string{"coordinator"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func listenLoop(t *testing.T, handle func(net.Conn)) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue
			}
			go handle(c)
		}
	}()
	return ln.Addr().String()
}

func freePort(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func waitDial(addr string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// sample reads the relay's memory, threads and descriptors from /proc.
func sample(pid int, at time.Duration) memSample {
	s := memSample{at: at}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 {
			continue
		}
		v, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			s.rss = v << 10
		case "RssAnon:":
			s.anon = v << 10
		case "RssFile:":
			s.file = v << 10
		case "Threads:":
			s.threads = int(v)
		}
	}
	if fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid)); err == nil {
		s.fds = len(fds)
	}
	return s
}

// scrapeModes reads the relay's connection counts per failure mode.
func scrapeModes(url string) map[string]float64 {
	resp, err := http.Get(url)
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	modes := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		if !strings.HasPrefix(line, "ccproxy_connections_total{") {
			continue
		}
		i := strings.Index(line, `failure_mode="`)
		j := strings.LastIndex(line, " ")
		if i < 0 || j < 0 {
			continue
		}
		mode := line[i+len(`failure_mode="`):]
		mode = mode[:strings.IndexByte(mode, '"')]
		v, _ := strconv.ParseFloat(line[j+1:], 64)
		modes[mode] += v
	}
	return modes
}

const podLimit = 50 << 20

func (o *stormOutcome) judge() {
	if o.peak.rss >= podLimit {
		o.problems = append(o.problems, fmt.Sprintf("peak RSS %.1f MiB reached the pod's 50 MiB", mib(o.peak.rss)))
	}
	if o.healthyErrs > 0 {
		o.problems = append(o.problems, fmt.Sprintf("the healthy client failed %d times; first: %s", o.healthyErrs, o.healthyFirstErr))
	}
	if len(o.healthyRTTs) == 0 {
		o.problems = append(o.problems, "the healthy client made no round trip")
	}
	if o.endFD > o.baseFD+8 {
		o.problems = append(o.problems, fmt.Sprintf("descriptors: %d before the storm, %d three seconds after it", o.baseFD, o.endFD))
	}
	rate := float64(o.attempted) / o.finish.Sub(o.started).Seconds()
	if rate < 1000 {
		o.problems = append(o.problems, fmt.Sprintf("only %.0f failing connections per second were made (%d wanted): not a storm of thousands per second", rate, o.cfg.rate))
	}
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

func (o *stormOutcome) summary() string {
	var b strings.Builder
	d := o.finish.Sub(o.started)
	fmt.Fprintf(&b, "storm: %d failing connections in %s (%.0f/s; %d/s asked, %d clients)\n", o.attempted, d.Round(time.Millisecond), float64(o.attempted)/d.Seconds(), o.cfg.rate, o.cfg.workers)
	for k, n := range o.byKind {
		fmt.Fprintf(&b, "  %-62s %d\n", stormKindNames[k]+":", n)
	}
	fmt.Fprintf(&b, "relay RSS: %.1f MiB before (anon %.1f + file %.1f); peak %.1f MiB at %s (anon %.1f + file %.1f, %d threads, %d fds); %.1f MiB 3 s after (anon %.1f + file %.1f)\n",
		mib(o.base.rss), mib(o.base.anon), mib(o.base.file), mib(o.peak.rss), o.peak.at.Round(time.Second), mib(o.peak.anon), mib(o.peak.file), o.peak.threads, o.peak.fds,
		mib(o.end.rss), mib(o.end.anon), mib(o.end.file))
	fmt.Fprintf(&b, "relay GOMEMLIMIT: %s; descriptors %d before, peak %d, %d after; threads %d before, peak %d\n", o.cfg.memLimit, o.baseFD, o.peakFD, o.endFD, o.baseThr, o.peakThr)
	rtts := slices.Clone(o.healthyRTTs)
	slices.Sort(rtts)
	q := func(p float64) time.Duration {
		if len(rtts) == 0 {
			return 0
		}
		return rtts[min(len(rtts)-1, int(p*float64(len(rtts))))]
	}
	fmt.Fprintf(&b, "healthy client: %d round trips on one TLS connection, p50 %s, p99 %s, max %s, longest gap between two %s; %d errors; new connections %d ok, %d failed\n",
		len(rtts), q(0.5).Round(time.Microsecond), q(0.99).Round(time.Microsecond), q(1).Round(time.Microsecond), o.maxGap.Round(time.Millisecond), o.healthyErrs, o.newConnsOK, o.newConnsFailed)
	if len(o.modes) > 0 {
		var ms []string
		for m, v := range o.modes {
			if v > 0 {
				ms = append(ms, fmt.Sprintf("%s %.0f", m, v))
			}
		}
		slices.Sort(ms)
		fmt.Fprintf(&b, "relay's verdicts (ccproxy_connections_total): %s\n", strings.Join(ms, ", "))
	}
	if len(o.problems) == 0 {
		b.WriteString("result: PASS, under the pod's 50 MiB and the healthy client's forwarding went on\n")
	} else {
		fmt.Fprintf(&b, "result: FAIL: %s\n", strings.Join(o.problems, "; "))
	}
	return b.String()
}

func (o *stormOutcome) markdown() string {
	var b strings.Builder
	b.WriteString("## Storm\n\n")
	b.WriteString("Written by `make soak` (`TestStorm`, build tag `soak`): the ccproxy binary as the pod runs it (two routes, tracing on to `/dev/null`, admin metrics, the pod's 50Mi as `GOMEMLIMIT=45MiB`, which ccproxy sets itself from a cgroup memory.max of 50Mi), thousands of failing handshakes per second for a minute on one route while a healthy TLS client keeps a connection busy and opens a new one every second on the other; all on loopback, bounded by rate and duration.\n\n")
	fmt.Fprintf(&b, "- run: %s – %s\n", o.started.UTC().Format(time.RFC3339), o.finish.UTC().Format(time.RFC3339))
	kernel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	fmt.Fprintf(&b, "- machine: %d CPUs, Linux %s, %s; the load generator, both upstreams and the relay share them\n\n", runtime.NumCPU(), strings.TrimSpace(string(kernel)), runtime.Version())
	b.WriteString("```\n")
	b.WriteString(o.summary())
	b.WriteString("```\n\nRelay memory, once a second:\n\n| t | RSS MiB | anon | file | threads | fds |\n|---:|---:|---:|---:|---:|---:|\n")
	for i, s := range o.samples {
		if i%5 != 4 && i != len(o.samples)-1 {
			continue
		}
		fmt.Fprintf(&b, "| %s | %.1f | %.1f | %.1f | %d | %d |\n", s.at.Round(time.Second), mib(s.rss), mib(s.anon), mib(s.file), s.threads, s.fds)
	}
	return b.String()
}

// buildCCProxy builds the ccproxy binary as the image does.
func buildCCProxy(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "ccproxy")
	build := exec.Command("go", "build", "-trimpath", "-o", bin, "github.com/ccproxy-dev/ccproxy/cmd/ccproxy")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building ccproxy: %v\n%s", err, out)
	}
	return bin
}

// relayProc is a ccproxy binary running as the relay under test.
type relayProc struct {
	cmd *exec.Cmd
	pid int
	log syncBuffer
}

// startRelay runs bin with args (and env added to this process's) and
// waits (10 s at most) until ready says it is up.
func startRelay(t *testing.T, bin string, args, env []string, ready func() error) *relayProc {
	t.Helper()
	r := &relayProc{cmd: exec.Command(bin, args...)}
	r.cmd.Dir = filepath.Dir(bin)
	r.cmd.Env = append(os.Environ(), env...)
	r.cmd.Stdout, r.cmd.Stderr = &r.log, &r.log
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r.pid = r.cmd.Process.Pid
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := ready()
		if err == nil {
			return r
		}
		if time.Now().After(deadline) {
			r.stop()
			t.Fatalf("relay not up: %v\n%s", err, r.log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop ends the relay as the kubelet does (SIGTERM) and waits for it.
func (r *relayProc) stop() error {
	r.cmd.Process.Signal(syscall.SIGTERM)
	return r.cmd.Wait()
}

// writeSection replaces the section of path that starts with heading (up
// to the next "## " heading or the end) with text, or appends it.
func writeSection(path, heading, text string) error {
	old, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	s := string(old)
	if i := strings.Index(s, "\n"+heading+"\n"); i >= 0 {
		rest := s[i+1+len(heading):]
		end := len(s)
		if j := strings.Index(rest, "\n## "); j >= 0 {
			end = i + 1 + len(heading) + j + 1
		}
		s = s[:i+1] + text + s[end:]
	} else {
		if s != "" && !strings.HasSuffix(s, "\n\n") {
			s = strings.TrimRight(s, "\n") + "\n\n"
		}
		s += text
	}
	return os.WriteFile(path, []byte(s), 0o644)
}

func tailString(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
