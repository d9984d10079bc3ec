// Package tunnel carries relayed connections between a local ccproxy (an
// operator's laptop) and an in-cluster one over QUIC, so the in-cluster
// relay inspects them exactly as it inspects its own, and the local side
// learns each connection's failure mode in the same trace.
//
//	// in the cluster
//	srv := &tunnel.Server{Listen: ":4433", Cert: cert, Peers: []tunnel.Fingerprint{laptop},
//		Routes: []tunnel.Route{{Name: "userapi", Upstream: "coordinator:1313", Inspect: true}},
//		Relay:  tunnel.WatchRelayer(&proxy.Proxy{}, watch.Config{Tracer: tp.Tracer()})}
//	go srv.Run(ctx)
//
//	// on the laptop
//	cl := &tunnel.Client{Server: "tunnel.example:4433", Cert: cert, Peers: []tunnel.Fingerprint{cluster},
//		Routes: []tunnel.LocalRoute{{Listen: "127.0.0.1:1313"}}, Tracer: tp.Tracer()}
//	go cl.Run(ctx)
//
// # Authentication
//
// Mutual TLS 1.3 inside QUIC, ALPN "ccproxy-tunnel/1". Each side has an
// ECDSA P-256 key with a self-signed certificate (GenerateKeyPair) and pins
// the other's certificate by its SHA-256 fingerprint; there is no CA. A
// peer whose certificate is not pinned fails the handshake, so the server
// never accepts a connection, let alone a stream, from it. Because a TLS 1.3
// client finishes its handshake before the server has checked the client
// certificate, the client treats the connection as up only once the server's
// hello (below) arrives.
//
// # Wire protocol
//
// One QUIC connection per client carries every local TCP connection.
//
// Control stream. Right after the handshake the server opens one
// unidirectional stream and sends messages on it for the connection's life,
// each a uint8 type, a uint16 body length (at most 8 KiB) and the body:
//
//	1 hello     uint8 version (1): the server accepted the client.
//	2 verdict   uint64 stream ID, uint8-prefixed failure mode,
//	            uint16-prefixed detail, uint8-prefixed upstream address:
//	            the relay's outcome for one relay stream, sent after it ended.
//	3 goaway    empty: the server is draining; open streams finish, new
//	            ones belong on a new connection.
//
// A client ignores types it does not know. Verdicts travel apart from the
// data so that the data stays raw bytes, unframed, in both directions.
//
// Relay streams. For each local TCP connection the client opens one
// bidirectional stream and writes a header, then the connection's bytes:
//
//	uint8  version (1)
//	uint16 body length (at most 1024)
//	body:  uint8-prefixed route name ("" = the server's default route;
//	       letters, digits, '.', '_', '-'), uint8-prefixed W3C traceparent,
//	       uint16-prefixed W3C tracestate
//
// The header names a route, never an address: the server relays only to its
// configured upstreams, and an unknown name is refused without a dial.
// After the header both directions are the relayed connection's bytes,
// unchanged. A FIN on a stream direction is a TCP half-close of that
// direction. A reset is a TCP reset, with these stream error codes:
//
//	0x1 reset          one end of the relayed connection reset, or the relay
//	                   aborted it (idle timeout, failed upstream dial); the
//	                   verdict follows on the control stream
//	0x2 bad header     malformed, unknown version, or not within 10 s
//	0x3 unknown route  the header named a route the server does not have
//	0x4 busy           the server is at its connection limit
//	0x5 shutdown       the server is draining
//
// Codes 0x2 to 0x5 refuse a stream before anything is relayed; no verdict
// follows. Connection close codes: 0x0 done, 0x1 shutting down, 0x2
// protocol violation.
//
// # Traces
//
// The local side starts a root `ccproxy.connection` span per accepted
// connection with a `tunnel.open` child (waiting for the tunnel, opening the
// stream) and a `tunnel.stream` child, whose context travels in the header.
// The server's relay starts its own `ccproxy.connection` span as a child of
// it (package watch honours a remote parent), so both share one trace id.
// When the verdict arrives the local root span gets its failure mode,
// detail and upstream, with `ccproxy.tunnel.verdict_source` = "remote".
// When none can come the tunnel says why (a verdict.TunnelFailure: tunnel
// down, peer pin refused, server at its stream or connection limit, route
// unknown to the server, server shutting down, stream header refused,
// tunnel lost, verdict never came, local end stopped first) and
// verdict.Decide names the mode: tunnel_unavailable, with
// verdict_source "local", `ccproxy.tunnel.failure` set to the reason and a
// detail that opens with it. The tunnel names no failure mode itself, so
// upstream_* on the local side always is the in-cluster relay's verdict on
// the real upstream. The root span is written by trace.EndConnection, as
// the relay's is.
//
// # Liveness
//
// Both sides send QUIC keep-alives (DefaultKeepAlive) within the idle
// timeout (DefaultIdleTimeout). The client keeps one connection up,
// reconnecting after a loss with exponential backoff and jitter
// (DefaultMinBackoff to DefaultMaxBackoff); a local connection waits for
// the tunnel up to its dial timeout. On goaway the client moves new
// connections to a fresh tunnel connection while old streams finish.
package tunnel
