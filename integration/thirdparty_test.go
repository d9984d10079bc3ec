// Package integration_test drives real third-party clients (openssl
// s_client, grpcurl) through a ccproxy relay to the simulated Coordinator.
package integration_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ccproxy-dev/ccproxy/attest"
	"github.com/ccproxy-dev/ccproxy/integration/simulated/coordinator"
	"github.com/ccproxy-dev/ccproxy/internal/failure"
	"github.com/ccproxy-dev/ccproxy/internal/watch"
	"github.com/ccproxy-dev/ccproxy/proxy"
	"github.com/ccproxy-dev/ccproxy/proxy/inspect"
)

// need returns the path of tool, or fails in CI and skips elsewhere.
func need(t *testing.T, tool string) string {
	t.Helper()
	if p, err := exec.LookPath(tool); err == nil {
		return p
	}
	gobin := filepath.Join(os.Getenv("HOME"), "go", "bin", tool)
	if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
		gobin = filepath.Join(strings.TrimSpace(string(out)), "bin", tool)
	}
	if _, err := os.Stat(gobin); err == nil {
		return gobin
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s is not installed: scripts/test-deps.sh installs it", tool)
	}
	t.Skipf("%s is not installed (scripts/test-deps.sh installs it)", tool)
	return ""
}

type setup struct {
	coord    *coordinator.Coordinator
	relay    string
	verdicts chan inspect.Verdict
	opts     attest.Options
}

// start runs a simulated SNP Coordinator and a relay in front of it.
func start(t *testing.T) *setup {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	c, err := coordinator.New(coordinator.Config{})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	coordDone := make(chan struct{})
	go func() { c.Serve(ctx, ln); close(coordDone) }()
	m, err := attest.ParseManifest(c.Manifest())
	if err != nil {
		t.Fatal(err)
	}
	s := &setup{coord: c, verdicts: make(chan inspect.Verdict, 8),
		opts: attest.Options{Offline: true, SNPRoots: c.Authority().SNPRootsPEM(), Reference: m}}
	w := watch.New(watch.Config{
		CheckCert: watch.AttestChecker(s.opts),
		OnVerdict: func(_ proxy.ConnInfo, v inspect.Verdict) { s.verdicts <- v },
	})
	p := &proxy.Proxy{Routes: []proxy.Route{{Listen: "127.0.0.1:0", Upstream: ln.Addr().String(), Inspect: true}}, NewObserver: w.Observe}
	lns, err := p.Listen(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s.relay = lns[0].Addr().String()
	relayDone := make(chan struct{})
	go func() { p.Serve(ctx, lns); close(relayDone) }()
	t.Cleanup(func() { cancel(); <-relayDone; <-coordDone })
	return s
}

func (s *setup) verdict(t *testing.T) inspect.Verdict {
	t.Helper()
	select {
	case v := <-s.verdicts:
		return v
	case <-time.After(10 * time.Second):
		t.Fatal("the relay named no connection")
	}
	return inspect.Verdict{}
}

// TestOpenSSLThroughRelay: an older-style client (nonce in SNI) built from
// openssl s_client completes the attested handshake through the relay, the
// relay names it ok, and the certificate it saved verifies with ccproxy's
// attest against the nonce openssl sent.
func TestOpenSSLThroughRelay(t *testing.T) {
	openssl := need(t, "openssl")
	for _, version := range []string{"-tls1_3", "-tls1_2"} {
		t.Run(version, func(t *testing.T) {
			s := start(t)
			nonce := bytes.Repeat([]byte{0x5a}, 32)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, openssl, "s_client", version, "-connect", s.relay,
				"-servername", base64.StdEncoding.EncodeToString(nonce), "-showcerts")
			cmd.Stdin = strings.NewReader("")
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("openssl s_client: %v\n%s", err, out)
			}
			v := s.verdict(t)
			if v.Mode != failure.OK {
				t.Errorf("relay named %s (%s), want ok", v.Mode, v.Detail)
			}
			begin := bytes.Index(out, []byte("-----BEGIN CERTIFICATE-----"))
			end := bytes.Index(out, []byte("-----END CERTIFICATE-----"))
			if begin < 0 || end < 0 {
				t.Fatalf("no certificate in s_client output:\n%s", out)
			}
			pem := out[begin : end+len("-----END CERTIFICATE-----")]
			opts := s.opts
			opts.Nonce = nonce
			r := attest.CheckFile(ctx, append(pem, '\n'), opts)
			if r.Verdict != attest.Verified || r.Mode != failure.OK {
				t.Errorf("attest on the s_client certificate: %s %s (%s)", r.Verdict, r.Mode, r.Detail)
			}
			opts.Nonce = bytes.Repeat([]byte{0x11}, 32)
			if r := attest.CheckFile(ctx, append(pem, '\n'), opts); r.Mode != failure.ReportDataMismatch {
				t.Errorf("attest with another nonce: %s, want report_data_mismatch", r.Mode)
			}
		})
	}
}

// TestGrpcurlThroughRelay: grpcurl calls the user API's GetManifests over
// the aTLS port through the relay (nonce in SNI, no client certificate,
// which the Coordinator requests but does not require).
func TestGrpcurlThroughRelay(t *testing.T) {
	grpcurl := need(t, "grpcurl")
	s := start(t)
	nonce := bytes.Repeat([]byte{0x42}, 32)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	proto, _ := filepath.Abs("../internal/userapi")
	cmd := exec.CommandContext(ctx, grpcurl, "-insecure",
		"-servername", base64.StdEncoding.EncodeToString(nonce),
		"-import-path", proto, "-proto", "userapi.proto",
		s.relay, "edgelesssys.contrast.userapi.UserAPI/GetManifests")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("grpcurl: %v\n%s", err, out)
	}
	if !bytes.Contains(out, []byte(`"Manifests"`)) {
		t.Errorf("grpcurl answer has no manifests:\n%s", out)
	}
	v := s.verdict(t)
	if v.Mode != failure.OK {
		t.Errorf("relay named %s (%s), want ok", v.Mode, v.Detail)
	}
}
