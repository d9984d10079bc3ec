// Package atls reproduces the mechanics of Contrast's attested TLS on the
// Coordinator's port 1313 (Contrast's internal/atls): how the client's nonce
// rides in the ClientHello (ALPN entry or SNI), how the server binds evidence
// to its certificate key and that nonce, how the server nonce rides in the
// CertificateRequest, and what the client checks before it looks at evidence.
// It does not judge evidence: servers get it from an Issuer, clients hand the
// certificate to a callback.
//
// Typical use, a server and a client of one connection:
//
//	srvCfg, _ := atls.ServerConfig(issuer, atls.ServerOptions{})
//	ln := tls.NewListener(tcpListener, srvCfg)
//
//	nonce, _ := atls.NewNonce()
//	cliCfg := atls.ClientConfig(nonce, atls.NonceALPN, "localhost", func(c *x509.Certificate) error {
//		return checkEvidence(c, nonce)
//	})
//	conn, err := tls.Dial("tcp", addr, cliCfg)
//
// NonceFromHello is pure so a relay can classify ClientHellos with exactly the
// server's rules.
package atls
