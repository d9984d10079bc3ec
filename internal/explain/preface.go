package explain

import "github.com/ccproxy-dev/ccproxy/internal/failure"

// prefaceRe is grpc-go's error when the connection broke right after the
// TLS handshake finished, before the HTTP/2 prefaces were exchanged:
// the handshake (and so the attestation) succeeded, then the upstream
// reset or closed. The relay names such a connection upstream_reset.
var prefaceRe = pattern(`(?:error reading server preface|failed to write client preface): [^"\n]*?(?:connection reset by peer|broken pipe|EOF)`)

// ruleServerPreface explains a connection that broke after the handshake.
func ruleServerPreface(s *scanner) {
	s.each(prefaceRe, func(m []int) {
		s.claim(m[0], m[1])
		s.add(m[0], m[1], Finding{
			Mode:    string(failure.UpstreamReset),
			Summary: "the connection broke right after the attested handshake succeeded",
			Values:  s.connValues(m[0]),
			Meaning: "The TLS handshake, and with it the attestation, finished; then the Coordinator side reset or closed " +
				"the connection before gRPC could exchange its first frames. Something between the CLI and the Coordinator " +
				"(a proxy, a load balancer's idle or connection limits, a Coordinator restart) dropped it.",
			NextSteps: []string{
				"Retry: if it recurs, check what sits in front of the Coordinator for connection limits and resets (`ccproxy analyze` counts upstream_reset per upstream).",
			},
		})
	})
}

// processCertRe is the CLI's own check of the certificate before any
// evidence (internal/atls processCertificate): it does not parse, there is
// none, or x509 verification with the certificate as its only root failed
// for a reason other than its validity period (which ruleClockSkew claims
// first).
var processCertRe = pattern(`process certificate: (?:parse certificate: [^"\n]*|rawCerts is empty|verify certificate: [^"\n]*)`)

// noNonceRe is the Coordinator's log when a ClientHello carried no aTLS
// nonce at all (no atls: ALPN entry, no SNI): it cannot issue a certificate
// and answers internal_error, which the relay names issuer_error.
var noNonceRe = pattern(`no nonce in supported protocols or SNI`)

func ruleProcessCertificate(s *scanner) {
	s.each(processCertRe, func(m []int) {
		s.claim(m[0], m[1])
		s.add(m[0], m[1], Finding{
			Mode:    string(failure.EvidenceInvalid),
			Summary: "the CLI rejected the Coordinator's certificate before looking at its evidence",
			Values:  append(s.connValues(m[0]), Value{"cause", excerpt(s.text[m[0]:m[1]])}),
			Meaning: "Before any attestation check, the CLI parses the server certificate and verifies it with itself as the only root. " +
				"This one did not parse, was missing, or failed that x509 check, so it cannot be a Contrast Coordinator's aTLS certificate " +
				"(or something between rewrote it).",
			NextSteps: []string{
				"Save the certificate (`openssl s_client -connect <addr> -servername x </dev/null | openssl x509`) and check it: `ccproxy attest <certificate>`.",
			},
		})
	})
	s.each(noNonceRe, func(m []int) {
		s.claim(m[0], m[1])
		s.add(m[0], m[1], Finding{
			Mode:    string(failure.IssuerError),
			Summary: "a client reached the Coordinator without an aTLS nonce",
			Values:  s.connValues(m[0]),
			Meaning: "The Coordinator found no nonce in the ClientHello (no atls: ALPN entry and no SNI), so it could not bind evidence to the handshake and answered with internal_error. The client was not a Contrast CLI, or something in between dropped the SNI and ALPN.",
			NextSteps: []string{
				"Connect with the Contrast CLI (or `ccproxy probe`), not a plain TLS client; check that proxies in between pass SNI and ALPN through.",
			},
		})
	})
}
