//go:build soak

package soak_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ccproxy-dev/ccproxy/bench/soak"
)

// TestSoakBinary is make soak's run at the scale the pod is sized for: the
// ccproxy binary in its own process, as relay mode runs in the pod (two
// inspecting routes, tracing on to /dev/null, admin metrics), carries as
// many concurrent checksummed connections as the machine's descriptor
// limit lets it hold, each past its inspection in the event loop, for the
// set time. This process is the clients and the checking upstream.
//
// In TestSoak one process holds every end of a connection (eight
// descriptors at worst); here the relay holds only its own (two sockets,
// four while a connection hands over to the event loop, and its loops'
// pipes, at most 256 per loop), and this process the client's and the
// upstream's, so the same hard limit holds about twice the connections.
//
// It passes with zero loss, the relay's metrics equal to the bytes on the
// wire, and the relay's descriptors back to where they started.
//
//	CCPROXY_SOAK_CONNS     concurrent connections asked for (10000)
//	CCPROXY_SOAK_DURATION  how long new connections start (2m)
//	CCPROXY_SOAK_MAX_BYTES largest payload per direction (4194304)
//	CCPROXY_SOAK_RESULTS   the results go into this file's "## Soak through the binary" section
func TestSoakBinary(t *testing.T) {
	o := runSoakBinary(t, binSoakConfig{
		requested: envInt(t, "CCPROXY_SOAK_CONNS", 10000),
		duration:  envDuration(t, "CCPROXY_SOAK_DURATION", 2*time.Minute),
		maxBytes:  int64(envInt(t, "CCPROXY_SOAK_MAX_BYTES", 4<<20)),
	})
	fmt.Print(o.summary())
	if path := os.Getenv("CCPROXY_SOAK_RESULTS"); path != "" {
		if err := writeSection(path, binSoakHeading, o.markdown()); err != nil {
			t.Errorf("writing %s: %v", path, err)
		} else {
			t.Logf("results written to %s", path)
		}
	}
	if len(o.problems) > 0 {
		t.Logf("relay log (tail):\n%s", tailString(o.relayLog, 3000))
	}
	for _, p := range o.problems {
		t.Error(p)
	}
}

const binSoakHeading = "## Soak through the binary"

// The relay's descriptors beyond two per connection: its event loops'
// pipes (proxy's loopMaxPipes, 256 per loop, one loop per CPU up to
// loopMaxThreads, 4), two descriptors each, and its own (listeners, the
// admin server, the trace file, epoll and eventfd descriptors).
func relayReserveFDs() int {
	return min(runtime.NumCPU(), 4)*256*2 + 128
}

// relayFDsPerConnTimes2 is twice the descriptors the relay is sized for
// per connection (4: see runSoakBinary).
const relayFDsPerConnTimes2 = 8

type binSoakConfig struct {
	requested int
	duration  time.Duration
	maxBytes  int64
}

type binSoakOutcome struct {
	cfg              binSoakConfig
	workers          int
	maxConns         int
	fdSoft, fdHard   uint64
	started, finish  time.Time
	load             soak.Report
	up               soak.SideReport
	relayConns       float64
	relayBytes       [2]float64
	refused          float64
	base, peak, end  memSample
	baseSockets      int
	midKinds         map[string]int // the relay's descriptors by kind, halfway through
	endSockets       int
	peakFD, peakThr  int
	peakFDAt         time.Duration
	peakKinds        map[string]int // the relay's descriptors by kind when they first passed 90% of the limit
	settle           time.Duration
	relayLog         string
	problems         []string
	requestedLimited bool
}

func (o *binSoakOutcome) problem(format string, a ...any) {
	o.problems = append(o.problems, fmt.Sprintf(format, a...))
}

func runSoakBinary(t *testing.T, cfg binSoakConfig) *binSoakOutcome {
	o := &binSoakOutcome{cfg: cfg}
	var err error
	// This process: a client and an upstream socket per connection.
	o.fdSoft, o.fdHard, err = soak.RaiseFileLimit(uint64(2*cfg.requested + reserveFDs))
	if err != nil {
		t.Fatal(err)
	}
	fitHere := (int(o.fdSoft) - reserveFDs) / 2
	// The relay (it raises its soft limit to the hard one): two sockets per
	// connection it holds, and their two duplicates while one direction is
	// in the event loop and the other not yet. This test's traffic keeps
	// many connections so (a request-response connection's upload is in
	// the loop while its reply's direction waits for its first byte on its
	// goroutine), and under the ramp's load more of them at once: sized
	// for 2.5 per connection, the relay ran out at 4.7 sockets per open
	// connection two seconds into the ramp. So the worst case, 4; and a
	// twentieth more connections than workers, for those the relay still
	// closes while their worker dials the next.
	o.maxConns = (int(o.fdHard) - relayReserveFDs()) * 2 / relayFDsPerConnTimes2
	o.workers = min(cfg.requested, fitHere, o.maxConns*19/20)
	if o.workers < cfg.requested {
		o.requestedLimited = true
		t.Logf("RLIMIT_NOFILE hard limit %d: %d connections need about %d descriptors in the relay and %d here; running %d (relay --max-connections %d)",
			o.fdHard, cfg.requested, cfg.requested*relayFDsPerConnTimes2/2+relayReserveFDs(), 2*cfg.requested+reserveFDs, o.workers, o.maxConns)
	}
	hello, err := soak.ClientHello()
	if err != nil {
		t.Fatal(err)
	}
	bin := buildCCProxy(t)

	upLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	up := &soak.Upstream{}
	upDone := make(chan struct{})
	go func() { up.Serve(upLn); close(upDone) }()
	defer func() {
		upLn.Close()
		<-upDone
	}()

	ports := []int{freePort(t), freePort(t)}
	adminPort := freePort(t)
	addrs := []string{fmt.Sprintf("127.0.0.1:%d", ports[0]), fmt.Sprintf("127.0.0.1:%d", ports[1])}
	args := []string{
		"--forward", addrs[0] + "=" + upLn.Addr().String(),
		"--forward", addrs[1] + "=" + upLn.Addr().String(),
		"--admin-listen", fmt.Sprintf("127.0.0.1:%d", adminPort),
		"--trace-file", os.DevNull,
		"--max-connections", strconv.Itoa(o.maxConns),
		"--log-level", "warn",
	}
	// Ready when its admin server says so: a probe connection to a route
	// would be one more connection in the counts.
	readyURL := fmt.Sprintf("http://127.0.0.1:%d/readyz", adminPort)
	relay := startRelay(t, bin, args, nil, func() error { return httpOK(readyURL) })
	stopped := false
	defer func() {
		if !stopped {
			relay.stop()
		}
	}()
	time.Sleep(time.Second)
	o.base = sample(relay.pid, 0)
	o.baseSockets = socketFDs(relay.pid)
	o.started = time.Now()

	sampDone := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		for {
			if o.midKinds == nil && time.Since(o.started) > cfg.duration/2 {
				o.midKinds = fdKinds(relay.pid)
			}
			s := sample(relay.pid, time.Since(o.started))
			if s.rss > o.peak.rss {
				o.peak = s
			}
			if s.fds > o.peakFD {
				o.peakFD, o.peakFDAt = s.fds, s.at
			}
			if o.peakKinds == nil && s.fds > int(o.fdHard)*9/10 {
				o.peakKinds = fdKinds(relay.pid)
			}
			o.peakThr = max(o.peakThr, s.threads)
			select {
			case <-sampDone:
				return
			case <-tick.C:
			}
		}
	}()
	load := &soak.Load{
		Addrs:    addrs,
		Workers:  o.workers,
		Duration: cfg.duration,
		Ramp:     min(5*time.Second, cfg.duration/4),
		MaxBytes: cfg.maxBytes,
		Seed:     uint64(time.Now().UnixNano()),
		Hello:    hello,
	}
	o.load = load.Run(context.Background())
	close(sampDone)
	<-sampled
	o.finish = time.Now()

	// Every connection has ended: the relay's sockets come back. (Its
	// event loops, started on the first hand-off, keep an epoll and an
	// eventfd descriptor each, and Go's splice pipes wait in a pool for
	// two collections; neither grows with the connections carried.)
	settle := time.Now()
	for {
		o.end = sample(relay.pid, time.Since(o.started))
		o.endSockets = socketFDs(relay.pid)
		if o.endSockets <= o.baseSockets || time.Since(settle) > 15*time.Second {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	o.settle = time.Since(settle)
	metricsURL := fmt.Sprintf("http://127.0.0.1:%d/metrics", adminPort)
	if resp, err := http.Get(metricsURL); err != nil {
		o.problem("reading the relay's metrics: %v", err)
	} else {
		o.relayConns, o.relayBytes = scrapeText(resp.Body)
		resp.Body.Close()
	}
	o.refused = scrapeSum(metricsURL, "ccproxy_connections_refused_total")
	stopped = true
	if err := relay.stop(); err != nil {
		o.problem("relay exit after SIGTERM: %v", err)
	}
	o.relayLog = relay.log.String()
	up.Wait()
	o.up = up.Report()
	o.judge()
	return o
}

// socketFDs counts the sockets among pid's descriptors.
func socketFDs(pid int) int {
	k := fdKinds(pid)
	if k == nil {
		return -1
	}
	return k["socket"]
}

// fdKinds counts pid's descriptors by kind: socket, pipe, anon_inode
// (epoll, eventfd), file.
func fdKinds(pid int) map[string]int {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	kinds := map[string]int{}
	for _, e := range ents {
		target, err := os.Readlink(dir + "/" + e.Name())
		if err != nil {
			continue
		}
		kind, _, ok := strings.Cut(target, ":")
		if !ok || strings.HasPrefix(target, "/") {
			kind = "file"
		}
		kinds[kind]++
	}
	return kinds
}

func formatKinds(m map[string]int) string {
	kinds := make([]string, 0, len(m))
	for k, n := range m {
		kinds = append(kinds, fmt.Sprintf("%s %d", k, n))
	}
	slices.Sort(kinds)
	return strings.Join(kinds, ", ")
}

// httpOK is nil when url answers 200.
func httpOK(url string) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	return nil
}

// scrapeSum sums a metric over its labels; -1 when the page cannot be read.
func scrapeSum(url, name string) float64 {
	resp, err := http.Get(url)
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	page, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return -1
	}
	sum := 0.0
	for _, line := range strings.Split(string(page), "\n") {
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		if i := strings.LastIndexByte(line, ' '); i >= 0 {
			v, _ := strconv.ParseFloat(line[i+1:], 64)
			sum += v
		}
	}
	return sum
}

func (o *binSoakOutcome) judge() {
	if o.load.Connections == 0 {
		o.problem("no connection completed")
	}
	if n := o.load.Lost(); n > 0 {
		o.problem("client side: %d connections lost %s; first: %s", n, soak.FormatLosses(o.load.Losses), strings.Join(o.load.Samples, " | "))
	}
	if n := o.up.Lost(); n > 0 {
		o.problem("upstream side: %d connections lost %s; first: %s", n, soak.FormatLosses(o.up.Losses), strings.Join(o.up.Samples, " | "))
	}
	if o.up.Connections != o.load.Connections {
		o.problem("upstream verified %d connections, the clients %d", o.up.Connections, o.load.Connections)
	}
	if o.up.BytesIn != o.load.BytesOut || o.up.BytesOut != o.load.BytesIn {
		o.problem("payload bytes: clients sent %d and received %d, upstream received %d and sent %d", o.load.BytesOut, o.load.BytesIn, o.up.BytesIn, o.up.BytesOut)
	}
	if o.refused != 0 {
		o.problem("ccproxy_connections_refused_total = %.0f below the connection limit", o.refused)
	}
	if int64(o.relayConns) != o.load.Connections {
		o.problem("ccproxy_connections_total = %.0f, clients completed %d", o.relayConns, o.load.Connections)
	}
	if int64(o.relayBytes[0]) != o.load.WireUp || int64(o.relayBytes[1]) != o.load.WireDown {
		o.problem("ccproxy_forwarded_bytes_total = %.0f up / %.0f down, clients sent %d / received %d", o.relayBytes[0], o.relayBytes[1], o.load.WireUp, o.load.WireDown)
	}
	if o.endSockets > o.baseSockets {
		o.problem("relay sockets: %d before, %d after (descriptors %d before, peak %d, %d after)", o.baseSockets, o.endSockets, o.base.fds, o.peakFD, o.end.fds)
	}
}

func (o *binSoakOutcome) summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "connections: %d completed through the relay, %d concurrent workers (requested %d), peak %d open at once\n",
		o.load.Connections, o.workers, o.cfg.requested, o.load.PeakConcurrent)
	fmt.Fprintf(&b, "bytes: %s client→upstream, %s upstream→client payload verified by SHA-256 (%d and %d bytes on the wire)\n",
		soak.IBytes(o.load.BytesOut), soak.IBytes(o.load.BytesIn), o.load.WireUp, o.load.WireDown)
	secs := o.load.Duration.Seconds()
	fmt.Fprintf(&b, "duration: %s of load (%s set), %.0f connections/s, %s/s\n",
		o.load.Duration.Round(time.Millisecond), o.cfg.duration, float64(o.load.Connections)/secs,
		soak.IBytes(int64(float64(o.load.BytesOut+o.load.BytesIn)/secs)))
	fmt.Fprintf(&b, "losses: client %d %s, upstream %d %s; refused %.0f\n",
		o.load.Lost(), soak.FormatLosses(o.load.Losses), o.up.Lost(), soak.FormatLosses(o.up.Losses), o.refused)
	fmt.Fprintf(&b, "relay metrics: ccproxy_connections_total %.0f, ccproxy_forwarded_bytes_total %.0f up / %.0f down\n",
		o.relayConns, o.relayBytes[0], o.relayBytes[1])
	perConn := 0.0
	if o.load.PeakConcurrent > 0 {
		perConn = float64(o.peakFD-o.base.fds) / float64(o.load.PeakConcurrent)
	}
	fmt.Fprintf(&b, "relay process: sockets %d before, %d after %s; descriptors %d before, peak %d (%.2f per open connection), %d after (hard limit %d, --max-connections %d); threads %d before, peak %d; RSS %.1f MiB before, peak %.1f MiB, %.1f MiB after\n",
		o.baseSockets, o.endSockets, o.settle.Round(time.Millisecond), o.base.fds, o.peakFD, perConn, o.end.fds, o.fdHard, o.maxConns,
		o.base.threads, o.peakThr, mib(o.base.rss), mib(o.peak.rss), mib(o.end.rss))
	fmt.Fprintf(&b, "relay descriptors: peak at %s of the load", o.peakFDAt.Round(100*time.Millisecond))
	if o.peakKinds != nil {
		fmt.Fprintf(&b, "; past 90%% of the limit: %s", formatKinds(o.peakKinds))
	}
	if o.midKinds != nil {
		fmt.Fprintf(&b, "; halfway: %s", formatKinds(o.midKinds))
	}
	b.WriteString("\n")
	if len(o.problems) == 0 {
		b.WriteString("result: PASS, zero loss\n")
	} else {
		b.WriteString("result: FAIL\n")
		for _, p := range o.problems {
			fmt.Fprintf(&b, "  - %s\n", p)
		}
	}
	return b.String()
}

func (o *binSoakOutcome) markdown() string {
	var b strings.Builder
	b.WriteString(binSoakHeading + "\n\n")
	b.WriteString("Written by `make soak` (`TestSoakBinary`, build tag `soak`): the ccproxy binary in its own process, as the pod runs it (two inspecting routes, tracing on to `/dev/null`, admin metrics), carries as many concurrent checksummed connections as the descriptor limit lets it hold; the test process is the clients and the checking upstream. Traffic as above.\n\n")
	fmt.Fprintf(&b, "- run: %s – %s\n", o.started.UTC().Format(time.RFC3339), o.finish.UTC().Format(time.RFC3339))
	kernel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	fmt.Fprintf(&b, "- machine: %d CPUs, Linux %s, %s; the load generator, the upstream and the relay share them\n\n", runtime.NumCPU(), strings.TrimSpace(string(kernel)), runtime.Version())
	if o.requestedLimited {
		fmt.Fprintf(&b, "**Concurrency limited by the machine**: %d connections were asked for. The hard RLIMIT_NOFILE here is %d per process and cannot be raised (not even as root: the container has no CAP_SYS_RESOURCE). The relay needs two sockets per connection it holds, and their two duplicates while one direction is in the event loop and the other still on its goroutine (this traffic's request-response connections upload in the loop while the reply's direction waits for its first byte: sized for 2.5, the relay ran out at 4.7 sockets per open connection under the ramp; sized for the worst case, 4), and %d for its event loops' pipes and its own, so its `--max-connections` is %d, and the workers a twentieth below that (%d), for the connections the relay is still closing while their workers dial the next. %d connections need about %d descriptors in the relay.\n\n",
			o.cfg.requested, o.fdHard, relayReserveFDs(), o.maxConns, o.workers, o.cfg.requested, o.cfg.requested*relayFDsPerConnTimes2/2+relayReserveFDs())
	}
	b.WriteString("```\n")
	b.WriteString(o.summary())
	b.WriteString("```\n")
	return b.String()
}
