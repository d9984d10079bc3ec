package demo

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"regexp"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/ccproxy-dev/ccproxy/attest"
	"github.com/ccproxy-dev/ccproxy/attest/attesttest"
	"github.com/ccproxy-dev/ccproxy/integration/simulated/contrastcli"
	"github.com/ccproxy-dev/ccproxy/integration/simulated/coordinator"
	"github.com/ccproxy-dev/ccproxy/internal/atls"
	"github.com/ccproxy-dev/ccproxy/internal/explain"
	"github.com/ccproxy-dev/ccproxy/internal/failure"
	"github.com/ccproxy-dev/ccproxy/internal/watch"
	"github.com/ccproxy-dev/ccproxy/proxy"
	"github.com/ccproxy-dev/ccproxy/proxy/inspect"
	"github.com/ccproxy-dev/ccproxy/trace"
)

// Checks builds the relay's evidence hooks for one set of attest options
// (the simulated Coordinator's roots and manifest): the TLS 1.2 certificate
// check and the active-probe refiner. cmd/ccproxy provides the same ones it
// uses in relay mode, so the demo runs the product's code paths.
type Checks func(opts attest.Options) (watch.CertChecker, watch.Refiner)

// Prober asks the Coordinator at addr for its state, as `ccproxy probe`
// does, validating against opts and the local manifest.
type Prober func(ctx context.Context, addr string, opts attest.Options, manifest []byte) (failure.Mode, string, error)

// Config configures a demo run.
type Config struct {
	Out       io.Writer  // progress and the table; nil discards
	TraceFile string     // OTLP/JSON lines; empty: no traces
	Checks    Checks     // nil: no evidence checks (evidence scenarios then fail)
	Probe     Prober     // nil: ByProbe scenarios fail
	Scenarios []Scenario // nil: Scenarios()
	// ClientTimeout bounds each client; 0 means 5 s.
	ClientTimeout time.Duration
}

// Row is one scenario's outcome.
type Row struct {
	Scenario  Scenario
	ClientSaw string // the client's error, or "ok"
	Named     failure.Mode
	Detail    string
	Pass      bool
	Why       string // why it did not pass
	Took      time.Duration
	// Connections are the modes of every connection the relay named in
	// this scenario (a gRPC client may open more than one).
	Connections []failure.Mode
	// Run is every connection of the scenario in accept order, as the
	// relay marked its place in its run (ccproxy.run.attempt, the link)
	// and named it.
	Run []Attempt
}

// Report is a whole run.
type Report struct {
	Rows      []Row
	TraceFile string
}

// Failed counts the scenarios that were misnamed or whose client did not see
// the expected symptom.
func (r *Report) Failed() int {
	n := 0
	for _, row := range r.Rows {
		if !row.Pass {
			n++
		}
	}
	return n
}

// Issuer timing of the slow-issuer scenario: the Coordinator takes longer
// than the client waits, and ccproxy's deadline is shorter than both.
const (
	slowIssuerDelay = 3 * time.Second
	issuerDeadline  = 500 * time.Millisecond
	slowClientWait  = 1500 * time.Millisecond
)

// Run drives the scenarios one after another and prints a table.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	out := cfg.Out
	if out == nil {
		out = io.Discard
	}
	scenarios := cfg.Scenarios
	if scenarios == nil {
		scenarios = Scenarios()
	}
	env, err := newEnv(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer env.close()

	rep := &Report{TraceFile: cfg.TraceFile}
	fmt.Fprintf(out, "ccproxy demo: %d scenarios, simulated Coordinators (SNP %s, TDX %s), relay on loopback\n",
		len(scenarios), env.coords[coordinator.PlatformSNP].addr, env.coords[coordinator.PlatformTDX].addr)
	for i, sc := range scenarios {
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		row := env.run(ctx, sc)
		rep.Rows = append(rep.Rows, row)
		mark := "ok  "
		if !row.Pass {
			mark = "FAIL"
		}
		fmt.Fprintf(out, "[%2d/%d] %s %-45s → %s (%s)\n", i+1, len(scenarios), mark, sc.Name, row.Named, row.Took.Round(time.Millisecond))
		if !row.Pass {
			fmt.Fprintf(out, "        %s\n", row.Why)
		}
	}
	if err := env.tp.ForceFlush(ctx); err != nil {
		return rep, fmt.Errorf("flushing traces: %w", err)
	}
	fmt.Fprintln(out)
	PrintTable(out, rep)
	return rep, nil
}

// PrintTable writes the report as an aligned table.
func PrintTable(w io.Writer, rep *Report) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SCENARIO\tWHAT THE CLIENT SAW\tCCPROXY NAMED\tRUN\tDETAIL")
	for _, r := range rep.Rows {
		named := string(r.Named)
		if !r.Pass {
			named += fmt.Sprintf(" (want %s)", r.Scenario.Want)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Scenario.Name, cut(r.ClientSaw, 60), named, cut(RunText(r.Run), 70), cut(r.Detail, 110))
	}
	tw.Flush()
	fmt.Fprintf(w, "\n%d of %d scenarios named correctly", len(rep.Rows)-rep.Failed(), len(rep.Rows))
	if rep.TraceFile != "" {
		fmt.Fprintf(w, "; traces in %s (try: ccproxy analyze %s)", rep.TraceFile, rep.TraceFile)
	}
	fmt.Fprintln(w)
}

// seedCoordinator keys the SNP Coordinator whose VM has seedVCPUs vCPUs and
// whose manifest is in the newest layout (1-vCPU seed measurement and APEIP).
const (
	seedCoordinator = "snp-seed"
	seedVCPUs       = 4
	// legacySuffix keys the Coordinators whose manifest is in the older
	// layout (Scenario.Legacy).
	legacySuffix = "-legacy"
)

type coord struct {
	c        *coordinator.Coordinator
	addr     string
	opts     attest.Options
	manifest []byte
}

type env struct {
	cfg    Config
	tp     *trace.Provider
	coords map[string]*coord
	stop   context.CancelFunc
	wg     sync.WaitGroup
}

func newEnv(ctx context.Context, cfg Config) (*env, error) {
	ver := "demo"
	tp, err := trace.Setup(ctx, trace.Config{File: cfg.TraceFile, ServiceVersion: ver})
	if err != nil {
		return nil, err
	}
	auth, err := attesttest.NewAuthority()
	if err != nil {
		return nil, fmt.Errorf("test authority: %w", err)
	}
	sctx, stop := context.WithCancel(context.Background())
	e := &env{cfg: cfg, tp: tp, coords: map[string]*coord{}, stop: stop}
	for _, key := range []string{coordinator.PlatformSNP, coordinator.PlatformTDX, seedCoordinator,
		coordinator.PlatformSNP + legacySuffix, coordinator.PlatformTDX + legacySuffix} {
		cc := coordinator.Config{Authority: auth, Platform: key, IssuerDelay: slowIssuerDelay}
		switch key {
		case seedCoordinator:
			cc.Platform, cc.VCPUs = coordinator.PlatformSNP, seedVCPUs
		case coordinator.PlatformSNP + legacySuffix, coordinator.PlatformTDX + legacySuffix:
			cc.Platform = strings.TrimSuffix(key, legacySuffix)
			cc.Manifest = auth.LegacyManifestJSON(cc.Platform)
		}
		c, err := coordinator.New(cc)
		if err != nil {
			e.close()
			return nil, err
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			e.close()
			return nil, err
		}
		e.wg.Add(1)
		go func() { defer e.wg.Done(); c.Serve(sctx, ln) }()
		m, err := attest.ParseManifest(c.Manifest())
		if err != nil {
			e.close()
			return nil, fmt.Errorf("simulated manifest: %w", err)
		}
		e.coords[key] = &coord{
			c: c, addr: ln.Addr().String(), manifest: c.Manifest(),
			opts: attest.Options{Offline: true, SNPRoots: auth.SNPRootsPEM(), TDXRoots: auth.TDXRootsPEM(), Reference: m},
		}
	}
	return e, nil
}

func (e *env) close() {
	e.stop()
	e.wg.Wait()
	e.tp.Shutdown(context.Background())
}

func (e *env) run(ctx context.Context, sc Scenario) Row {
	start := time.Now()
	row := Row{Scenario: sc}
	platform := sc.Platform
	if platform == "" {
		platform = coordinator.PlatformSNP
	}
	if sc.SeedManifest {
		platform = seedCoordinator
	}
	if sc.Legacy {
		platform += legacySuffix
	}
	co := e.coords[platform]
	co.c.SetFault(sc.Fault)
	co.c.SetFaultSequence(sc.FirstFaults...)
	co.c.SetClockSkew(sc.ClockSkew)
	defer co.c.SetFault(coordinator.FaultNone)
	defer co.c.SetFaultSequence()
	defer co.c.SetClockSkew(0)

	upstream := co.addr
	switch sc.Upstream {
	case UpstreamClosedPort:
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err == nil {
			upstream = ln.Addr().String()
			ln.Close()
		}
	case UpstreamNoSuchName:
		upstream = "coordinator.ccproxy-demo.invalid:1313"
	}

	verdicts := make(chan connVerdict, 64)
	rec := newRunRecorder(e.tp.Tracer())
	wc := watch.Config{
		Tracer:         rec,
		IssuerDeadline: issuerDeadline,
		OnVerdict: func(info proxy.ConnInfo, v inspect.Verdict) {
			select {
			case verdicts <- connVerdict{info.Accepted, v}:
			default:
			}
		},
	}
	if e.cfg.Checks != nil {
		wc.CheckCert, wc.Refine = e.cfg.Checks(co.opts)
	}
	p := &proxy.Proxy{
		Routes:      []proxy.Route{{Listen: "127.0.0.1:0", Upstream: upstream, Inspect: true}},
		DialTimeout: 2 * time.Second,
		NewObserver: rec.observe(watch.New(wc).Observe),
	}
	lns, err := p.Listen(ctx)
	if err != nil {
		row.Why = err.Error()
		return row
	}
	relayAddr := lns[0].Addr().String()
	rctx, stopRelay := context.WithCancel(ctx)
	relayDone := make(chan struct{})
	go func() { p.Serve(rctx, lns); close(relayDone) }()
	defer func() { stopRelay(); <-relayDone }()

	clientErr := e.client(ctx, sc, relayAddr, co)
	row.ClientSaw = "ok"
	if clientErr != nil {
		row.ClientSaw = clientText(clientErr)
	}

	// The relay names each connection when it closes; the client has just
	// closed its own, and a refining probe may still be running.
	switch {
	case sc.WantRun != "":
		// A retrying client's story is its whole run: wait for every
		// attempt's verdict; the run's outcome names the scenario.
		got := waitRun(verdicts, rec)
		row.Run = rec.attempts(got)
		for _, cv := range got {
			row.Connections = append(row.Connections, cv.v.Mode)
		}
		row.Named = runOutcome(row.Run)
		for _, cv := range got {
			if cv.v.Mode == row.Named {
				row.Detail = cv.v.Detail
			}
		}
		if len(got) == 0 {
			row.Why = "the relay named no connection"
		} else {
			row.Why = checkRun(row.Run, sc.WantRun, e.tp.Enabled())
		}
	default:
		v, all, got, ok := pickVerdict(verdicts)
		if ok {
			row.Named, row.Detail, row.Connections = v.Mode, v.Detail, all
		} else {
			row.Why = "the relay named no connection"
		}
		row.Run = rec.attempts(got)
	}
	if sc.ByProbe {
		if e.cfg.Probe == nil {
			row.Why = "no prober configured"
		} else {
			mode, detail, err := e.cfg.Probe(ctx, relayAddr, co.opts, co.manifest)
			if err != nil {
				row.Why = "probe: " + err.Error()
			}
			// The relay saw a healthy connection; the state is the probe's.
			if row.Named != failure.OK {
				row.Why = fmt.Sprintf("relay named %s for a healthy connection", row.Named)
			}
			row.Named, row.Detail = mode, detail
		}
	}
	row.Took = time.Since(start)
	row.Pass, row.Why = judge(sc, row, clientErr, row.Why)
	if row.Pass {
		row.Pass, row.Why = explainAgrees(sc, row, clientErr)
	}
	return row
}

// explainAgrees: the error the CLI printed, pasted into `ccproxy explain`,
// names the mode the relay named for the same connection (or the
// scenario's documented ExplainSays).
func explainAgrees(sc Scenario, row Row, clientErr error) (bool, string) {
	if clientErr == nil || sc.Client != ClientCLI && sc.Client != "" || sc.Upstream != UpstreamCoordinator || sc.Retries {
		return true, ""
	}
	want := row.Named
	if sc.ExplainSays != "" {
		want = sc.ExplainSays
	}
	fs := explain.Explain(clientErr.Error())
	if len(fs) == 0 {
		return false, fmt.Sprintf("explain recognises nothing in the CLI's error, the relay named %s", row.Named)
	}
	// The same text can stand for several modes (internal_error: the
	// issuer failed, or the Coordinator is too old); the relay tells them
	// apart, and explain lists the others as alternatives.
	if fs[0].Mode != string(want) && !slices.Contains(fs[0].Alternatives, string(want)) {
		return false, fmt.Sprintf("explain names the CLI's error %s, the relay named %s", fs[0].Mode, want)
	}
	return true, ""
}

type connVerdict struct {
	accepted time.Time
	v        inspect.Verdict
}

// pickVerdict waits for the relay's verdicts on the scenario's connections
// and returns the one that tells the story: a gRPC client may open a
// connection it never uses, so the earliest connection that carried a
// ClientHello wins, and a bare connect-and-close only when nothing else came.
// Such an unused connection is often named first, while the real one is
// still being refined by a probe: after it, wait longer for the real one.
// It returns every verdict it received too.
func pickVerdict(ch <-chan connVerdict) (inspect.Verdict, []failure.Mode, []connVerdict, bool) {
	const (
		stragglers     = 300 * time.Millisecond // after a connection that carried a ClientHello
		afterBareClose = 2 * time.Second        // after connect-and-close only
	)
	var got []connVerdict
	sawHello := false
	wait := time.After(15 * time.Second)
	for {
		select {
		case cv := <-ch:
			got = append(got, cv)
			switch {
			case cv.v.Mode != failure.ClientAborted && !sawHello:
				sawHello = true
				wait = time.After(stragglers)
			case len(got) == 1:
				wait = time.After(afterBareClose)
			}
			continue
		case <-wait:
		}
		break
	}
	if len(got) == 0 {
		return inspect.Verdict{}, nil, nil, false
	}
	all := make([]failure.Mode, len(got))
	for i, cv := range got {
		all[i] = cv.v.Mode
	}
	best := -1
	for i, cv := range got {
		if cv.v.Mode == failure.ClientAborted {
			continue
		}
		if best < 0 || cv.accepted.Before(got[best].accepted) {
			best = i
		}
	}
	if best < 0 {
		best = 0
	}
	return got[best].v, all, got, true
}

func judge(sc Scenario, row Row, clientErr error, why string) (bool, string) {
	if why != "" {
		return false, why
	}
	if row.Named != sc.Want {
		return false, fmt.Sprintf("named %s, want %s (%s)", row.Named, sc.Want, row.Detail)
	}
	if sc.ClientSees == "" {
		if clientErr != nil {
			return false, "the client failed: " + clientErr.Error()
		}
		return true, ""
	}
	if clientErr == nil {
		return false, "the client succeeded, want " + sc.ClientSees
	}
	if !regexp.MustCompile(sc.ClientSees).MatchString(clientErr.Error()) {
		return false, fmt.Sprintf("the client saw %q, want /%s/", clientErr.Error(), sc.ClientSees)
	}
	return true, ""
}

// client runs the scenario's client against the relay and returns what it
// reported (nil for success).
func (e *env) client(ctx context.Context, sc Scenario, addr string, co *coord) error {
	timeout := e.cfg.ClientTimeout
	if timeout == 0 {
		timeout = 5 * time.Second
	}
	if sc.Fault == coordinator.FaultIssuerSlow {
		timeout = slowClientWait
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if sc.Retries {
		return SetLoop(ctx, addr, cliOptions(sc, co))
	}
	switch sc.Client {
	case ClientHTTP:
		return rawExchange(ctx, addr, []byte("GET / HTTP/1.1\r\nHost: coordinator\r\n\r\n"))
	case ClientHangUp:
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return err
		}
		c.Close()
		return errors.New("closed without sending")
	case ClientTLS10:
		return tlsHandshake(ctx, addr, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS10})
	case ClientATLSv2:
		nonce, _ := atls.NewNonce()
		return tlsHandshake(ctx, addr, &tls.Config{InsecureSkipVerify: true, ServerName: "localhost",
			NextProtos: []string{"atls:v2:nonce:" + fmt.Sprintf("%x", nonce), "h2"}})
	}
	_, err := contrastcli.Verify(ctx, addr, cliOptions(sc, co))
	return err
}

// cliOptions are the scenario's CLI: co's manifest and roots, the
// scenario's nonce style, TLS version and expected policy.
func cliOptions(sc Scenario, co *coord) contrastcli.Options {
	opts := contrastcli.Options{
		Manifest:    co.manifest,
		SNPRootsPEM: co.opts.SNPRoots,
		TDXRootsPEM: co.opts.TDXRoots,
		NonceStyle:  sc.Style,
		Authority:   "localhost", // `contrast set -c localhost:1313` through a port-forward
		MaxTLS12:    sc.TLS12,
	}
	if sc.ClientPolicyHash {
		h := sha256.Sum256([]byte("another deployment's coordinator policy"))
		opts.PolicyHash = h[:]
	}
	return opts
}

func tlsHandshake(ctx context.Context, addr string, cfg *tls.Config) error {
	d := tls.Dialer{Config: cfg}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	return c.Close()
}

func rawExchange(ctx context.Context, addr string, req []byte) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	deadline, _ := ctx.Deadline()
	c.SetDeadline(deadline)
	c.Write(req)
	b, _ := io.ReadAll(c)
	if len(b) == 0 {
		return errors.New("connection closed without an answer")
	}
	return fmt.Errorf("answer: %q", strings.SplitN(string(b), "\r\n", 2)[0])
}

// clientText shortens a CLI error to the part a user looks at.
func clientText(err error) string {
	s := err.Error()
	if i := strings.LastIndex(s, "authentication handshake failed: "); i >= 0 {
		s = s[i+len("authentication handshake failed: "):]
	} else if i := strings.LastIndex(s, "desc = "); i >= 0 {
		s = s[i+len("desc = "):]
	}
	return strings.Trim(s, `"`)
}

func cut(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) <= n {
		return s
	}
	return s[:n-1] + "…"
}
