package watch_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ccproxy-dev/ccproxy/internal/failure"
	"github.com/ccproxy-dev/ccproxy/internal/watch"
	"github.com/ccproxy-dev/ccproxy/proxy"
	"github.com/ccproxy-dev/ccproxy/trace"
)

// TestClientHelloTimeoutSpan: a client that connects and sends nothing is
// reset when the ClientHello timeout runs out, and its span names
// client_aborted with a detail saying no ClientHello came in time.
func TestClientHelloTimeoutSpan(t *testing.T) {
	up := server(t, func(c net.Conn) { io.Copy(io.Discard, c) })
	h := newHarness(t, up, func(p *proxy.Proxy, _ *watch.Config) {
		p.ClientHelloTimeout = 200 * time.Millisecond
		p.IdleTimeout = time.Hour
	})
	c, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err = io.ReadAll(c)
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("client read = %v, want a reset", err)
	}
	_, attrs := h.span()
	if got := attr(attrs, "ccproxy.failure_mode"); got != string(failure.ClientAborted) {
		t.Errorf("failure_mode = %q, want client_aborted", got)
	}
	want := "No ClientHello came in time: the client sent no byte within the ClientHello timeout (200ms)"
	if got := attr(attrs, "ccproxy.failure_detail"); !strings.HasPrefix(got, want) {
		t.Errorf("failure_detail = %q, want it to start %q", got, want)
	}
}

// exhaustHelperEnv makes TestExhaustedDialHelper a relay that runs out of
// descriptors; its value is the trace file.
const exhaustHelperEnv = "CCPROXY_WATCH_EXHAUST_HELPER"

// TestExhaustedDialHelper is not a test: run as a child process with
// exhaustHelperEnv set, it starts a traced relay, lowers its own open-file
// limit so that the next accept takes the last descriptor number, prints
// "ready ADDR", and after one connection's verdict flushes the
// trace and prints "verdict MODE".
func TestExhaustedDialHelper(t *testing.T) {
	if os.Getenv(exhaustHelperEnv) == "" {
		t.Skip("helper process for TestExhaustedDialSpan")
	}
	up := server(t, func(c net.Conn) { io.Copy(c, c) })
	r := startFaultRelay(t, up, faultOptions{trace: func(c *trace.Config) { c.File = os.Getenv(exhaustHelperEnv) }})
	// The limit caps descriptor numbers: the next accept gets the lowest
	// free one, the dial's socket would need one above it.
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	lowest := uint64(f.Fd())
	f.Close()
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	lim.Cur = lowest + 1
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	fmt.Printf("ready %s\n", r.addr)
	v := r.verdict(t)
	lim.Cur = lim.Max
	syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
	r.connectionSpan(t) // flushes
	fmt.Printf("verdict %s\n", v.Mode)
}

// TestExhaustedDialSpan: a relay whose upstream dial fails with EMFILE (a
// child process with a small RLIMIT_NOFILE) resets the client and names
// the connection relay_resource_exhausted, never upstream_refused.
func TestExhaustedDialSpan(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^TestExhaustedDialHelper$", "-test.v")
	file := filepath.Join(t.TempDir(), "traces.jsonl")
	cmd.Env = append(os.Environ(), exhaustHelperEnv+"="+file)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	next := func(prefix string) []string {
		t.Helper()
		timeout := time.After(60 * time.Second)
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("helper ended before %q", prefix)
				}
				if strings.HasPrefix(l, prefix+" ") {
					return strings.Fields(l)[1:]
				}
			case <-timeout:
				t.Fatalf("no %q line from the helper", prefix)
			}
		}
	}
	ready := next("ready")
	addr := ready[0]
	c, err := net.Dial("tcp", addr)
	if err == nil {
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, err = c.Read(make([]byte, 1))
		c.Close()
		if err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("client read = %v, want the connection reset", err)
		}
	}
	if got := next("verdict")[0]; got != string(failure.RelayResourceExhausted) {
		t.Errorf("verdict %s, want %s", got, failure.RelayResourceExhausted)
	}
	cmd.Wait()
	var found bool
	for _, s := range readSpans(t, file) {
		if s.Name() != "ccproxy.connection" {
			continue
		}
		found = true
		m, d := attr(s.Attributes(), "ccproxy.failure_mode"), attr(s.Attributes(), "ccproxy.failure_detail")
		if m != string(failure.RelayResourceExhausted) || !strings.Contains(d, "too many open files") {
			t.Errorf("span: %s (%s), want %s naming EMFILE", m, d, failure.RelayResourceExhausted)
		}
	}
	if !found {
		t.Error("no connection span in the helper's trace file")
	}
}
