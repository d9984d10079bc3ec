package watch

import (
	"context"

	"github.com/ccproxy-dev/ccproxy/attest"
)

// AttestChecker checks TLS 1.2 certificates with package attest against
// opts (reference values, roots); each check gets the connection's nonce.
// attest decides every evidence mode, evidence_invalid for a certificate
// that does not parse included.
func AttestChecker(opts attest.Options) CertChecker {
	return func(ctx context.Context, der, nonce []byte) Evidence {
		o := opts
		if len(nonce) == 32 {
			o.Nonce = nonce
		}
		return EvidenceFrom(attest.CheckCertificateDER(ctx, der, o))
	}
}

// EvidenceFrom is the part of an attest result that goes on a span.
func EvidenceFrom(r attest.Result) Evidence {
	return Evidence{
		Platform:           r.Platform,
		Verdict:            string(r.Verdict),
		Mode:               r.Mode,
		Detail:             r.Detail,
		PolicyHash:         r.PolicyHash,
		ExpectedPolicyHash: r.ExpectedPolicyHash,
		ClockOffset:        r.ClockOffset,
	}
}
