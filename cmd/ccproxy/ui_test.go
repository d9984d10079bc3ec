package main

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/ccproxy-dev/ccproxy/attest/attesttest"
	"github.com/ccproxy-dev/ccproxy/integration/simulated/coordinator"
	"github.com/ccproxy-dev/ccproxy/integration/simulated/coordinatortest"
	"github.com/ccproxy-dev/ccproxy/internal/demo"
)

// findChromium returns the browser the live page test drives: in CI it
// must be there (scripts/test-deps.sh installs it), elsewhere the test is
// skipped without one.
func findChromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("no Chromium found (chromium, chromium-browser or google-chrome on PATH): scripts/test-deps.sh installs the Debian package chromium; the live page test must run in CI")
	}
	t.Skip("no Chromium found: install the Debian package chromium (scripts/test-deps.sh) to run the live page test")
	return ""
}

// headless starts Chromium, closed network and fresh profile, and returns
// a browser context.
func headless(t *testing.T, ctx context.Context, browser string, extra ...chromedp.ExecAllocatorOption) context.Context {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(browser),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1400, 1000),
	}
	opts = append(opts, extra...)
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	bctx, cancelBrowser := chromedp.NewContext(actx)
	t.Cleanup(func() { cancelBrowser(); cancelAlloc() })
	return bctx
}

// waitJS evaluates expr every 100 ms until it returns a value ok accepts,
// and returns that value; it fails the test when within passes first.
func waitJS[T any](t *testing.T, ctx context.Context, within time.Duration, what, expr string, ok func(T) bool) T {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
		if err == nil && ok(v) {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s (last value %v, err %v)", what, within, v, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestLivePageInBrowser drives the relay's page in a real headless
// Chromium: while a retrying CLI fails against a load balancer that closes
// after the ClientHello, the page shows the run with its attempt count
// rising and the right mode without a reload, and clicking a failed
// connection draws its waterfall (analyze's renderer, in a frame).
func TestLivePageInBrowser(t *testing.T) {
	browser := findChromium(t)

	auth, err := attesttest.NewAuthority()
	if err != nil {
		t.Fatal(err)
	}
	c, coordAddr := coordinatortest.Start(t, coordinator.Config{Authority: auth})
	c.SetFault(coordinator.FaultLBClose)

	ui := "127.0.0.1:" + freePort(t)
	relay := startRelay(t, coordAddr, "--ui-listen", ui) // no trace file: spans for the page only
	if !strings.Contains(relay.stderr.String(), "live page") {
		t.Fatalf("the relay does not say where its page is:\n%s", relay.stderr)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	bctx := headless(t, ctx, browser)
	if err := chromedp.Do(bctx, chromedp.Navigate("http://"+ui+"/"), chromedp.WaitVisible(chromedp.ID("runs"))); err != nil {
		t.Fatalf("opening the page: %v", err)
	}
	// A mark in this document: a reload would lose it.
	if err := chromedp.Do(bctx, chromedp.Evaluate[chromedp.Void](`window.ccproxyTestMark = 42`)); err != nil {
		t.Fatal(err)
	}

	// The CLI retries the way `contrast set` does, reconnecting at once.
	cliCtx, stopCLI := context.WithTimeout(ctx, 60*time.Second)
	defer stopCLI()
	cliDone := make(chan error, 1)
	go func() {
		cliDone <- demo.SetLoop(cliCtx, relay.addr, (&runsFixture{coord: c, relay: relay}).cli("127.0.0.1"))
	}()

	const runAttempts = `(() => { const r = document.querySelector('.run[data-outcome="lb_closed_early"]'); return r ? Number(r.dataset.attempts) : 0; })()`
	first := waitJS(t, bctx, 30*time.Second, "a lb_closed_early run on the page", runAttempts, func(n float64) bool { return n > 0 })
	later := waitJS(t, bctx, 30*time.Second, "its attempt count rising", runAttempts, func(n float64) bool { return n > first })
	t.Logf("the run's attempts on the page: %v, then %v", first, later)
	head := waitJS(t, bctx, 5*time.Second, "the run's sentence", `document.querySelector('.run[data-outcome="lb_closed_early"]').innerText`, func(s string) bool { return s != "" })
	for _, want := range []string{"in progress", "lb_closed_early", "the CLI printed: transport: authentication handshake failed: EOF", "What to do"} {
		if !strings.Contains(head, want) {
			t.Errorf("the run on the page lacks %q:\n%s", want, head)
		}
	}

	// Click a failed connection: its waterfall, drawn by analyze.
	waitJS(t, bctx, 15*time.Second, "a failed connection listed", `document.querySelectorAll('#conns tr.conn[data-mode="lb_closed_early"]').length`, func(n float64) bool { return n > 0 })
	if err := chromedp.Do(bctx, chromedp.Click(chromedp.CSS(`#conns tr.conn[data-mode="lb_closed_early"]`))); err != nil {
		t.Fatalf("clicking a connection: %v", err)
	}
	const spansDrawn = `(() => { const d = document.getElementById('waterfall').contentDocument; return d ? Array.from(d.querySelectorAll('.wf-row .op')).map(e => e.textContent).join(' ') : ''; })()`
	spans := waitJS(t, bctx, 15*time.Second, "the connection's waterfall", spansDrawn, func(s string) bool { return strings.Contains(s, "ccproxy.connection") })
	if !strings.Contains(spans, "upstream.dial") {
		t.Errorf("the waterfall draws %q: want the connection span and its upstream.dial child", spans)
	}
	mode := waitJS(t, bctx, 5*time.Second, "the connection's attributes", `document.getElementById('waterfall').contentDocument.querySelector('table.conn-attrs tr.hl td.v').textContent`, func(s string) bool { return s != "" })
	if mode != "lb_closed_early" {
		t.Errorf("the waterfall's failure mode attribute is %q, want lb_closed_early", mode)
	}

	if mark, err := chromedp.Run(bctx, chromedp.Evaluate[float64](`window.ccproxyTestMark || 0`)); err != nil || mark != 42 {
		t.Errorf("the page was reloaded (mark %v, err %v): it must update in place", mark, err)
	}
	stopCLI()
	if err := <-cliDone; err == nil {
		t.Errorf("the CLI succeeded against a load balancer that closes every connection")
	}
}
