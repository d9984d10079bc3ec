package watch_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ccproxy-dev/ccproxy/internal/failure"
	"github.com/ccproxy-dev/ccproxy/internal/watch"
	"github.com/ccproxy-dev/ccproxy/proxy"
	"github.com/ccproxy-dev/ccproxy/proxy/inspect"
	"github.com/ccproxy-dev/ccproxy/trace"
)

// TestVerdictFromFindings: the relay names a connection from what its
// sources found (verdict.Decide): the evidence of a TLS 1.2 certificate
// explains the client's rejection, a probe names a TLS 1.3 rejection, and
// without a checker the certificate stays unverified and the rejection the
// wire's. The root span encloses the evidence check and the probe, which
// both end after the connection closed.
func TestVerdictFromFindings(t *testing.T) {
	const slow = 150 * time.Millisecond
	tests := []struct {
		name    string
		version uint16
		check   watch.CertChecker
		refine  bool
		mode    failure.Mode
		detail  string
		verdict string // attest.verdict on the root span
		child   string // the child span that ends after the close
	}{
		{
			name: "TLS 1.2: the evidence explains the rejection", version: tls.VersionTLS12,
			check: func(_ context.Context, der, nonce []byte) watch.Evidence {
				if _, err := x509.ParseCertificate(der); err != nil || len(nonce) != 32 {
					return watch.Evidence{Verdict: "unverified", Detail: "the checker got no certificate or nonce"}
				}
				time.Sleep(slow)
				return watch.Evidence{Verdict: "rejected", Mode: failure.ReferenceValueMismatch, Detail: "report ID key not trusted"}
			},
			refine: true, mode: failure.ReferenceValueMismatch, detail: "Report ID key not trusted", verdict: "rejected", child: trace.SpanAttestVerify,
		},
		{
			name: "TLS 1.2 without a checker: unverified, the wire's rejection", version: tls.VersionTLS12,
			refine: true, mode: failure.ClientRejectedCertificate, verdict: "unverified",
		},
		{
			name: "TLS 1.3: the probe names the rejection", version: tls.VersionTLS13,
			refine: true, mode: failure.PolicyHashMismatch, detail: "Policy hash differs", child: trace.SpanProbe,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var probes atomic.Int32
			h := newHarness(t, tlsServer(t, tc.version, echo), func(_ *proxy.Proxy, wc *watch.Config) {
				wc.CheckCert = tc.check
				if tc.refine {
					wc.Refine = func(context.Context, string, inspect.Verdict, *inspect.ClientHello) (watch.Refinement, bool) {
						probes.Add(1)
						start := time.Now()
						time.Sleep(slow)
						return watch.Refinement{Mode: failure.PolicyHashMismatch, Detail: "policy hash differs", Start: start, End: time.Now()}, true
					}
				}
			})
			tlsClient(tc.version, true)(t, h.addr)
			root, attrs := h.span()
			if got := attr(attrs, string(trace.FailureMode)); got != string(tc.mode) {
				t.Fatalf("mode %s (%s), want %s", got, attr(attrs, string(trace.FailureDetail)), tc.mode)
			}
			if d := attr(attrs, string(trace.FailureDetail)); !strings.Contains(d, tc.detail) {
				t.Errorf("detail %q lacks %q", d, tc.detail)
			}
			if got := attr(attrs, string(trace.AttestVerdict)); got != tc.verdict {
				t.Errorf("attest.verdict %q, want %q", got, tc.verdict)
			}
			if tc.version == tls.VersionTLS12 && probes.Load() != 0 {
				t.Error("a probe ran, but TLS 1.2 showed the certificate")
			}
			var found bool
			for _, s := range readSpans(t, h.file) {
				if s.TraceID() != root.TraceID() || s.ParentSpanID() != root.SpanID() {
					continue
				}
				found = found || s.Name() == tc.child
				if s.StartTimestamp() < root.StartTimestamp() || s.EndTimestamp() > root.EndTimestamp() {
					t.Errorf("%s span %v..%v is not inside its connection %v..%v", s.Name(), s.StartTimestamp(), s.EndTimestamp(), root.StartTimestamp(), root.EndTimestamp())
				}
			}
			if tc.child != "" && !found {
				t.Errorf("no %s child span", tc.child)
			}
		})
	}
}
