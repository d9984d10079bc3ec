// Package targets starts what the benchmark measures: the upstream server
// process, and in front of it one of the relays (ccproxy, HAProxy, socat,
// or the profiling harness), each as its own process on 127.0.0.1, so
// their CPU and memory can be read from /proc.
//
//	up, _ := targets.StartUpstream(ctx, self, dir)
//	r, _ := targets.Start(ctx, targets.HAProxy, up.Addr, opts)
//	defer r.Stop()
//	u, _ := r.Usage()
package targets

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ccproxy-dev/ccproxy/bench/internal/procstat"
)

// Kind names a relay (or its absence).
type Kind string

const (
	Direct  Kind = "direct"  // no relay: clients dial the upstream
	CCProxy Kind = "ccproxy" // the ccproxy binary
	// CCProxyTraced is the ccproxy binary writing every span to an
	// OTLP/JSON file in WorkDir.
	CCProxyTraced Kind = "ccproxy-traced"
	HAProxy       Kind = "haproxy" // HAProxy in TCP mode with splice-auto
	Socat         Kind = "socat"   // socat forking per connection, as Contrast's port-forwarder pod
	Harness       Kind = "ccrelay" // bench/cmd/ccrelay: ccproxy's relay in process, with pprof
	// GoCopy is the plain Go relay every Go proxy starts as: accept, dial,
	// two goroutines each running io.Copy (which splices on Linux), FIN
	// passed on as CloseWrite. No inspection, no tracing.
	GoCopy Kind = "gocopy"
)

// Options configures how relays are started.
type Options struct {
	CCProxy, HAProxy, Socat, Harness string // executables
	// Self is the benchmark's own executable, which is the upstream
	// ("upstream") and the plain Go relay ("gocopy LISTEN UPSTREAM").
	Self string
	// MaxConns is HAProxy's maxconn: it reserves two descriptors per
	// connection at startup, so it must fit FDLimit.
	MaxConns int
	// FDLimit is the relays' RLIMIT_NOFILE, to size HAProxy's pipe pool so
	// its startup check (maxconn*2 + maxpipes*2 + overhead fds) passes.
	FDLimit int
	// WorkDir holds configuration files and each process's log.
	WorkDir string
	// HarnessArgs are extra flags for the harness (profile outputs).
	HarnessArgs []string
}

// Relay is a started relay process, or the direct baseline (no process).
type Relay struct {
	Kind Kind
	Addr string // where clients connect
	Log  string // the process's stdout and stderr

	cmd  *exec.Cmd
	done chan struct{}
	err  error // the process's exit, valid after done
}

// freePort returns a loopback port nothing listens on right now.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// Start starts a relay of kind in front of upstream and waits until it
// accepts connections.
func Start(ctx context.Context, kind Kind, upstream string, o Options) (*Relay, error) {
	if kind == Direct {
		return &Relay{Kind: Direct, Addr: upstream}, nil
	}
	port, err := freePort()
	if err != nil {
		return nil, fmt.Errorf("%s: finding a free port: %w", kind, err)
	}
	listen := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	args, err := command(kind, listen, upstream, port, o)
	if err != nil {
		return nil, err
	}
	r := &Relay{Kind: kind, Addr: listen}
	if err := r.start(args, fmt.Sprintf("%s-%d.log", kind, port), o.WorkDir); err != nil {
		return nil, err
	}
	if err := r.waitReady(ctx, 10*time.Second); err != nil {
		r.Stop()
		return nil, err
	}
	return r, nil
}

// command builds the relay's command line.
func command(kind Kind, listen, upstream string, port int, o Options) ([]string, error) {
	// ccproxy's limit is a count, not a resource reservation: 20000 keeps
	// it out of the way, as the issue asks.
	const ccproxyMaxConns = "20000"
	switch kind {
	case CCProxy, CCProxyTraced:
		args := []string{o.CCProxy, "--listen", listen, "--upstream", upstream,
			"--idle-timeout", "0", "--max-connections", ccproxyMaxConns, "--drain-timeout", "1s"}
		if kind == CCProxyTraced {
			args = append(args, "--trace-file", filepath.Join(o.WorkDir, fmt.Sprintf("traces-%d.jsonl", port)))
		}
		return args, nil
	case Harness:
		return append([]string{o.Harness, "-listen", listen, "-upstream", upstream,
			"-max-connections", ccproxyMaxConns}, o.HarnessArgs...), nil
	case HAProxy:
		cfg := filepath.Join(o.WorkDir, fmt.Sprintf("haproxy-%d.cfg", port))
		if err := os.WriteFile(cfg, []byte(HAProxyConfig(listen, upstream, o.MaxConns, o.FDLimit)), 0o644); err != nil {
			return nil, fmt.Errorf("haproxy: writing config: %w", err)
		}
		return []string{o.HAProxy, "-db", "-f", cfg}, nil
	case GoCopy:
		if o.Self == "" {
			return nil, errors.New("gocopy: Options.Self (the benchmark executable) is not set")
		}
		return []string{o.Self, "gocopy", listen, upstream}, nil
	case Socat:
		// As Contrast's port-forwarder runs it, bound to loopback here.
		return []string{o.Socat, "-d", fmt.Sprintf("TCP-LISTEN:%d,fork,reuseaddr,bind=127.0.0.1", port),
			"TCP:" + upstream}, nil
	}
	return nil, fmt.Errorf("unknown relay %q", kind)
}

// HAProxyConfig is a TCP-mode HAProxy configuration with splice-auto. Its
// pipe pool takes what RLIMIT_NOFILE leaves after maxconn*2 sockets
// (HAProxy refuses to start when maxconn*2 + maxpipes*2 exceeds the
// limit); pipes are only held while data is in flight, so a handful is
// enough for one bulk stream.
func HAProxyConfig(listen, upstream string, maxConn, fdLimit int) string {
	pipes := max(min(maxConn/4, (fdLimit-2*maxConn-32)/2), 0)
	return fmt.Sprintf(`global
    maxconn %[3]d
    maxpipes %[4]d

defaults
    mode tcp
    option splice-auto
    timeout connect 10s
    timeout client 1h
    timeout server 1h

listen relay
    bind %[1]s
    maxconn %[3]d
    server upstream %[2]s
`, listen, upstream, maxConn, pipes)
}

func (r *Relay) start(args []string, logName, dir string) error {
	logPath := filepath.Join(dir, logName)
	f, err := os.Create(logPath)
	if err != nil {
		return fmt.Errorf("%s: %w", r.Kind, err)
	}
	defer f.Close() // the child has its own copy
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdout, cmd.Stderr = f, f
	// Own process group, so Stop reaches socat's forked children too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("%s: starting %s: %w", r.Kind, args[0], err)
	}
	r.cmd, r.Log, r.done = cmd, logPath, make(chan struct{})
	go func() { r.err = cmd.Wait(); close(r.done) }()
	return nil
}

// waitReady dials until the relay accepts, or fails when it exits.
func (r *Relay) waitReady(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", r.Addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-r.done:
			return fmt.Errorf("%s exited before accepting (%v): %s", r.Kind, r.err, tail(r.Log))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: not accepting on %s after %s: %s", r.Kind, r.Addr, timeout, tail(r.Log))
		}
	}
}

// PID is the relay's main process, 0 for the direct baseline.
func (r *Relay) PID() int {
	if r.cmd == nil {
		return 0
	}
	return r.cmd.Process.Pid
}

// Usage samples the relay's process tree.
func (r *Relay) Usage() (procstat.Usage, error) {
	if r.cmd == nil {
		return procstat.Usage{}, errors.New("direct: no relay process")
	}
	return procstat.Sample(r.PID())
}

// Signal sends sig to the relay's main process.
func (r *Relay) Signal(sig syscall.Signal) error {
	if r.cmd == nil {
		return nil
	}
	return r.cmd.Process.Signal(sig)
}

// Stop ends the relay: SIGTERM to its process group, SIGKILL after 10 s.
// It returns once the main process has exited.
func (r *Relay) Stop() error {
	if r.cmd == nil {
		return nil
	}
	pgid := r.cmd.Process.Pid
	syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-r.done:
	case <-time.After(10 * time.Second):
		syscall.Kill(-pgid, syscall.SIGKILL)
		<-r.done
	}
	// Forked children that ignored SIGTERM.
	syscall.Kill(-pgid, syscall.SIGKILL)
	var ee *exec.ExitError
	if r.err != nil && !errors.As(r.err, &ee) {
		return r.err
	}
	return nil
}

// Upstream is the upstream server process (this program, re-executed with
// the "upstream" argument).
type Upstream struct {
	Relay
}

// StartUpstream starts self as the upstream server and reads its address
// from the first line of its standard output ("listening on ADDR").
// Extra args choose another upstream ("lbclose": close after the
// ClientHello).
func StartUpstream(ctx context.Context, self, dir string, args ...string) (*Upstream, error) {
	u := &Upstream{Relay{Kind: "upstream"}}
	cmd := exec.Command(self, append([]string{"upstream"}, args...)...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	f, err := os.CreateTemp(dir, "upstream-*.log")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	cmd.Stderr = f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("upstream: %w", err)
	}
	u.cmd, u.Log, u.done = cmd, f.Name(), make(chan struct{})
	line := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		if sc.Scan() {
			line <- sc.Text()
		}
		close(line)
		for sc.Scan() { // keep the pipe drained
		}
	}()
	go func() { u.err = cmd.Wait(); close(u.done) }()
	select {
	case l, ok := <-line:
		addr, found := strings.CutPrefix(l, "listening on ")
		if !ok || !found {
			u.Stop()
			return nil, fmt.Errorf("upstream: unexpected first line %q: %s", l, tail(u.Log))
		}
		u.Addr = addr
		return u, nil
	case <-time.After(10 * time.Second):
	case <-ctx.Done():
	}
	u.Stop()
	return nil, fmt.Errorf("upstream: no address after 10s: %s", tail(u.Log))
}

// tail is the end of a log file, for error messages.
func tail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(no log)"
	}
	if len(b) > 600 {
		b = b[len(b)-600:]
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "(empty log)"
	}
	return s
}
