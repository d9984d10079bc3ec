// Package probe is ccproxy's active attested probe: it connects to a
// Contrast Coordinator the way the Contrast CLI does (a fresh nonce in the
// ClientHello, the aTLS handshake, the client certificate without evidence),
// checks the evidence with package attest, and on success asks the user API
// over the same attested connection (GetManifests, gRPC on ALPN h2) what
// state the Coordinator is in. It names the outcome as exactly one failure
// mode of the contract and measures each phase: DNS, TCP connect, the
// issuer's latency (ClientHello to first server byte), handshake, user API.
//
//	rep, err := probe.Run(ctx, "coordinator:1313", probe.Config{
//		Attest: attest.Options{Reference: manifest},
//	})
//	if err != nil { ... }              // the address or options are invalid
//	fmt.Println(rep.Mode, rep.Detail)   // ok, policy_hash_mismatch, coordinator_recovery_mode, ...
//
// Nothing is decided twice: the probe's TLS client runs over a connection
// that tees its bytes into the relay's parsers and classifier (package
// proxy/inspect), so a handshake that fails before the certificate gets the
// relay's wire verdict (lb_closed_early, issuer_error, upstream_not_tls,
// upstream_refused, ...); the certificate's evidence gets attest's verdict.
// Only what neither of them can see is decided here: the Coordinator's state
// from the user API, the comparison with the local manifest.json, and
// coordinator_version_mismatch, which needs two handshakes to tell apart.
// Which of these findings names an attempt is verdict.Decide's to say
// (docs/verdict.md), as it is for a relayed connection.
//
// A Refiner lets the relay ask the same questions after the fact: when a
// client rejected the Coordinator's certificate under TLS 1.3 (which hides
// the certificate on the wire) or got internal_error, the relay probes the
// upstream once per cache period and names the exact reason.
package probe
