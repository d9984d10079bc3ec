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
