// Command livescreenshot takes the picture of the relay's live page in the
// README (scripts/live-screenshot.sh runs it): it starts a simulated
// Coordinator and the ccproxy binary in front of it with --ui-listen,
// drives the failures the page is for through the relay (a CLI retrying
// through a load balancer that drops its connections, then a slow issuer;
// a wrong policy hash; healthy calls), keeps one CLI retrying while the
// picture is taken, opens the page in headless Chromium, clicks the failed
// connection and saves a full-page screenshot. Everything stays on
// loopback.
//
//	go run ./scripts/livescreenshot -ccproxy ./ccproxy -chromium /usr/bin/chromium -out docs/live-page.png
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/ccproxy-dev/ccproxy/attest/attesttest"
	"github.com/ccproxy-dev/ccproxy/integration/simulated/contrastcli"
	"github.com/ccproxy-dev/ccproxy/integration/simulated/coordinator"
	"github.com/ccproxy-dev/ccproxy/internal/demo"
)

func main() {
	bin := flag.String("ccproxy", "", "the ccproxy binary")
	browser := flag.String("chromium", "chromium", "the Chromium binary")
	out := flag.String("out", "docs/live-page.png", "where to write the PNG")
	flag.Parse()
	if *bin == "" {
		log.Fatal("-ccproxy is required")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := run(ctx, *bin, *browser, *out); err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context, bin, browser, out string) error {
	auth, err := attesttest.NewAuthority()
	if err != nil {
		return fmt.Errorf("test authority: %w", err)
	}
	c, err := coordinator.New(coordinator.Config{Authority: auth, IssuerDelay: 3 * time.Second})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	cctx, stopCoord := context.WithCancel(ctx)
	defer stopCoord()
	go c.Serve(cctx, ln)

	dir, err := os.MkdirTemp("", "ccproxy-live-screenshot")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	manifest := filepath.Join(dir, "manifest.json")
	roots := filepath.Join(dir, "snp-roots.pem")
	if err := os.WriteFile(manifest, c.Manifest(), 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(roots, auth.SNPRootsPEM(), 0o600); err != nil {
		return err
	}
	relayAddr, err := freeAddr()
	if err != nil {
		return err
	}
	uiAddr, err := freeAddr()
	if err != nil {
		return err
	}
	relay := exec.CommandContext(ctx, bin, "--listen", relayAddr, "--upstream", ln.Addr().String(),
		"--ui-listen", uiAddr, "--manifest", manifest, "--snp-trusted-roots", roots, "--offline",
		"--issuer-deadline", "1s", "--log-level", "warn")
	relay.Stderr = os.Stderr
	if err := relay.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", bin, err)
	}
	defer func() {
		_ = relay.Process.Signal(syscall.SIGTERM)
		_ = relay.Wait()
	}()
	if err := waitHTTP(ctx, "http://"+uiAddr+"/api/v1/state"); err != nil {
		return err
	}

	cli := func(from string) contrastcli.Options {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
		return contrastcli.Options{
			Manifest: c.Manifest(), SNPRootsPEM: auth.SNPRootsPEM(), Authority: "localhost",
			Dialer: func(ctx context.Context, addr string) (net.Conn, error) { return d.DialContext(ctx, "tcp", addr) },
		}
	}
	once := func(from string) {
		cl, err := contrastcli.Dial(ctx, relayAddr, cli(from))
		if err != nil {
			return
		}
		defer cl.Close()
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		_, _ = cl.GetManifests(cctx)
	}
	retry := func(from string, d time.Duration) {
		rctx, cancel := context.WithTimeout(ctx, d)
		defer cancel()
		_ = demo.SetLoop(rctx, relayAddr, cli(from))
	}

	// Healthy calls, then a wrong policy hash, then a CLI whose load
	// balancer drops its connections until the issuer, now reached,
	// hangs past the deadline.
	once("127.0.0.2")
	c.SetFault(coordinator.FaultWrongPolicyHash)
	once("127.0.0.3")
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

	profile, err := os.MkdirTemp("", "ccproxy-live-chromium")
	if err != nil {
		return err
	}
	defer os.RemoveAll(profile)
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx,
		chromedp.ExecPath(browser), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.Flag("hide-scrollbars", true), chromedp.UserDataDir(profile), chromedp.WindowSize(1400, 1000))
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(actx)
	defer cancelBrowser()
	const failed = `#conns tr.conn[data-mode="policy_hash_mismatch"]`
	wctx, cancelWait := context.WithTimeout(bctx, 30*time.Second)
	defer cancelWait()
	if err := chromedp.Do(wctx,
		chromedp.Navigate("http://"+uiAddr+"/"),
		chromedp.WaitVisible(chromedp.CSS(`.run.in-progress`)),
		chromedp.WaitVisible(chromedp.CSS(failed)),
		chromedp.Click(chromedp.CSS(failed)),
	); err != nil {
		return fmt.Errorf("driving the page: %w (the page's data: %s)", err, stateOf(uiAddr))
	}
	// The frame sizes itself to the waterfall once it has loaded.
	deadline := time.Now().Add(15 * time.Second)
	for {
		h, err := chromedp.Run(bctx, chromedp.Evaluate[string](`document.getElementById('waterfall').style.height`))
		if err == nil && h != "" {
			break
		}
		if time.Now().After(deadline) {
			return errors.New("the waterfall did not load")
		}
		time.Sleep(100 * time.Millisecond)
	}
	png, err := chromedp.Run(bctx, chromedp.FullScreenshot(100))
	if err != nil {
		return fmt.Errorf("screenshot: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(out, png, 0o644); err != nil {
		return err
	}
	log.Printf("wrote %s (%d bytes)", out, len(png))
	return nil
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return "127.0.0.1:" + strconv.Itoa(ln.Addr().(*net.TCPAddr).Port), nil
}

func waitHTTP(ctx context.Context, url string) error {
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s never answered: %w", url, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// stateOf is the page's data, for an error message.
func stateOf(uiAddr string) string {
	resp, err := http.Get("http://" + uiAddr + "/api/v1/state")
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 8<<10))
	return string(b)
}
