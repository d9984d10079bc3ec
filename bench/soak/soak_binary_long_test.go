//go:build soak

package soak_test

import (
	"fmt"
	"io"
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

	up, upAddr, stopUp := startUpstream(t)
	defer stopUp()

	ports := []int{freePort(t), freePort(t)}
	adminPort := freePort(t)
	addrs := []string{fmt.Sprintf("127.0.0.1:%d", ports[0]), fmt.Sprintf("127.0.0.1:%d", ports[1])}
	args := []string{
		"--forward", addrs[0] + "=" + upAddr,
		"--forward", addrs[1] + "=" + upAddr,
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

	o.load = runSampled(newLoad(addrs, o.workers, cfg.duration, 5*time.Second, cfg.maxBytes, hello), func() {
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
	})
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
	exchangeChecks(o.problem, o.load, o.up, o.relayConns, o.relayBytes)
	if o.refused != 0 {
		o.problem("ccproxy_connections_refused_total = %.0f below the connection limit", o.refused)
	}
	if o.endSockets > o.baseSockets {
		o.problem("relay sockets: %d before, %d after (descriptors %d before, peak %d, %d after)", o.baseSockets, o.endSockets, o.base.fds, o.peakFD, o.end.fds)
	}
}

func (o *binSoakOutcome) summary() string {
	var b strings.Builder
	writeExchange(&b, o.load, o.up, o.workers, o.cfg.requested, o.cfg.duration,
		fmt.Sprintf("refused %.0f", o.refused), o.relayConns, o.relayBytes)
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
	writeResult(&b, o.problems)
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
