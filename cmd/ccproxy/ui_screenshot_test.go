package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/ccproxy-dev/ccproxy/attest/attesttest"
	"github.com/ccproxy-dev/ccproxy/integration/simulated/coordinator"
	"github.com/ccproxy-dev/ccproxy/integration/simulated/coordinatortest"
	"github.com/ccproxy-dev/ccproxy/internal/demo"
	"github.com/ccproxy-dev/ccproxy/internal/failure"
	"github.com/ccproxy-dev/ccproxy/internal/live"
)

// TestLivePageScreenshot takes the README's picture of the live page when
// CCPROXY_LIVE_SCREENSHOT names the PNG to write (scripts/live-screenshot.sh
// sets it); otherwise it is skipped. It drives what the page is for through
// the relay binary in front of the simulated Coordinator: healthy calls, a
// wrong policy hash, a CLI whose load balancer drops its connections until
// the issuer, reached at last, hangs past the deadline, and one CLI still
// retrying while the picture is taken; then it opens the page in headless
// Chromium, clicks the policy_hash_mismatch connection and saves the whole
// page.
func TestLivePageScreenshot(t *testing.T) {
	out := os.Getenv("CCPROXY_LIVE_SCREENSHOT")
	if out == "" {
		t.Skip("set CCPROXY_LIVE_SCREENSHOT=FILE.png to take the live page's picture (scripts/live-screenshot.sh)")
	}
	browser := findChromium(t)
	auth, err := attesttest.NewAuthority()
	if err != nil {
		t.Fatal(err)
	}
	c, coordAddr := coordinatortest.Start(t, coordinator.Config{Authority: auth, IssuerDelay: 3 * time.Second})
	dir := t.TempDir()
	manifest, roots := filepath.Join(dir, "manifest.json"), filepath.Join(dir, "snp-roots.pem")
	if err := os.WriteFile(manifest, c.Manifest(), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(roots, auth.SNPRootsPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	ui := "127.0.0.1:" + freePort(t)
	relay := startRelay(t, coordAddr, "--ui-listen", ui, "--probe=true", "--manifest", manifest,
		"--snp-trusted-roots", roots, "--offline", "--issuer-deadline", "1s")
	f := &runsFixture{coord: c, relay: relay}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	once := func(from string) {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		// `contrast set`'s loop; a healthy call and a wrong policy hash
		// are not retried, so this is one attempt.
		_ = demo.SetLoop(cctx, relay.addr, f.cli(from))
	}
	retry := func(from string, d time.Duration) {
		rctx, cancel := context.WithTimeout(ctx, d)
		defer cancel()
		_ = demo.SetLoop(rctx, relay.addr, f.cli(from))
	}
	once("127.0.0.2")
	c.SetFault(coordinator.FaultWrongPolicyHash)
	once("127.0.0.3")
	// Under TLS 1.3 the relay names it after its own probe of the
	// Coordinator: keep the fault until the probe is done.
	pageState(t, ui, "the policy_hash_mismatch connection named", func(st live.State) bool { return hasConn(st, failure.PolicyHashMismatch) })
	c.SetFault(coordinator.FaultLBClose)
	stormDone := make(chan struct{})
	go func() { retry("127.0.0.4", 6*time.Second); close(stormDone) }()
	time.Sleep(3 * time.Second)
	c.SetFault(coordinator.FaultIssuerSlow)
	<-stormDone
	c.SetFault(coordinator.FaultNone)
	once("127.0.0.2")
	// One CLI retrying while the picture is taken: its run is in progress.
	c.SetFault(coordinator.FaultLBClose)
	go retry("127.0.0.5", 40*time.Second)
	time.Sleep(2 * time.Second)

	bctx := headless(t, ctx, browser, chromedp.Flag("hide-scrollbars", true))
	const failed = `#conns tr.conn[data-mode="policy_hash_mismatch"]`
	if err := chromedp.Do(bctx, chromedp.Navigate("http://"+ui+"/")); err != nil {
		t.Fatalf("opening the page: %v", err)
	}
	waitJS(t, bctx, 15*time.Second, "a run in progress", `document.querySelectorAll('.run.in-progress').length`, func(n float64) bool { return n > 0 })
	modes := `Array.from(document.querySelectorAll('#conns tr.conn')).map(r => r.dataset.mode).join(' ')`
	listed := waitJS(t, bctx, 15*time.Second, "the connections listed", modes, func(s string) bool { return s != "" })
	if !strings.Contains(listed, "policy_hash_mismatch") {
		st := pageState(t, ui, "the page's data", func(live.State) bool { return true })
		t.Fatalf("no policy_hash_mismatch connection listed; the page counts %+v in a ring of %+v, runs %+v", st.Recent.Modes, st.Ring, st.Runs)
	}
	if err := chromedp.Do(bctx, chromedp.Click(chromedp.CSS(failed))); err != nil {
		t.Fatalf("clicking the connection: %v", err)
	}
	// The frame sizes itself to the waterfall once it has loaded.
	waitJS(t, bctx, 15*time.Second, "the waterfall", `document.getElementById('waterfall').style.height`, func(h string) bool { return h != "" })
	png, err := chromedp.Run(bctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if err := os.WriteFile(out, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s (%d bytes)", out, len(png))
}
