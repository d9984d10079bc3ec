package attest_test

import (
	"context"
	"testing"

	"github.com/ccproxy-dev/ccproxy/attest"
	"github.com/ccproxy-dev/ccproxy/attest/attesttest"
	"github.com/ccproxy-dev/ccproxy/internal/failure"
)

// benchmarkCheck measures what the relay pays per handshake: decode,
// verify signature and chain, validate against the manifest and the report
// data, on a Coordinator certificate.
func benchmarkCheck(b *testing.B, platform string) {
	a := testAuthority(b)
	h := newHandshake(b)
	oid, doc := evidenceFor(b, a, platform, attesttest.Evidence{ReportData: h.rd})
	cert := certFor(b, h, oid, doc, now)
	opts := attest.Options{
		Offline:   true,
		SNPRoots:  a.SNPRootsPEM(),
		TDXRoots:  a.TDXRootsPEM(),
		Reference: mustManifest(b, a.ManifestJSON()),
		Nonce:     h.nonce,
		Now:       clock,
	}
	ctx := context.Background()
	if res := attest.CheckCertificate(ctx, cert, opts); res.Mode != failure.OK || res.Verdict != attest.Verified {
		b.Fatalf("%s/%s: %s", res.Verdict, res.Mode, res.Detail)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		attest.CheckCertificate(ctx, cert, opts)
	}
}

func BenchmarkCheckSNP(b *testing.B) { benchmarkCheck(b, attest.PlatformSNP) }
func BenchmarkCheckTDX(b *testing.B) { benchmarkCheck(b, attest.PlatformTDX) }
