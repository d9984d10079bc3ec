package attest_test

import (
	"context"
	"strings"
	"testing"

	"github.com/ccproxy-dev/ccproxy/attest"
	"github.com/ccproxy-dev/ccproxy/internal/failure"
)

// TestCheckCertificateDER: a certificate from the wire is checked like a
// parsed one; bytes that are no certificate are evidence_invalid, decided
// here and not by the relay that saw them.
func TestCheckCertificateDER(t *testing.T) {
	h := newHandshake(t)
	cert := certFor(t, h, nil, nil, now)
	res := attest.CheckCertificateDER(context.Background(), cert.Raw, attest.Options{Offline: true, Now: clock})
	if res.Mode != failure.UnexpectedCertificate {
		t.Errorf("certificate without extension: %s (%s), want %s", res.Mode, res.Detail, failure.UnexpectedCertificate)
	}
	res = attest.CheckCertificateDER(context.Background(), []byte{0x30, 0x03, 0x02, 0x01}, attest.Options{Offline: true, Now: clock})
	if res.Mode != failure.EvidenceInvalid || res.Verdict != attest.Rejected {
		t.Fatalf("garbage: %s/%s (%s), want rejected/%s", res.Verdict, res.Mode, res.Detail, failure.EvidenceInvalid)
	}
	if !strings.HasPrefix(res.Detail, "The server certificate does not parse: ") {
		t.Errorf("detail %q", res.Detail)
	}
}
