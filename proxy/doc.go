// Package proxy relays TCP connections byte for byte and lets an Observer
// watch every byte as it passes.
//
// Typical use:
//
//	p := &proxy.Proxy{Routes: []proxy.Route{{Listen: ":1313", Upstream: "coordinator:1313"}}}
//	err := p.Run(ctx) // returns after ctx ends and in-flight connections drained
//
// The relay never changes, delays or buffers a byte for inspection: each
// chunk read from one side is written to the other first, and only then
// handed to the connection's Observer. Inspection runs on two goroutines,
// one per direction. Once the Observer says it has seen enough of a
// direction (the handshake is over), that direction joins the event loop
// (Linux, loop_linux.go): a few locked OS threads, each with an epoll set,
// watch duplicates of both sockets; the net.Conns are closed once neither
// direction needs them. A message is one read and one write from the
// loop's buffer; a stream moves with splice(2) through a pipe. An idle
// connection there holds no goroutine and no buffer. Elsewhere (and for
// connections that are not two TCP sockets, such as tunnel streams) each
// direction stays on its goroutine and moves streams with io.Copy between
// the *net.TCPConns.
//
// Half-close is forwarded: a FIN from one side becomes a shutdown of the
// write side (CloseWrite) on the other, and the opposite direction keeps
// running until it ends too. A reset (or a failed write) on one side
// resets the other. The idle timeout ends a connection both of whose
// directions were quiet that long. At shutdown, connections in flight get
// the drain timeout to finish; what is left is then closed on both sides
// and its directions end with ErrAborted. Both paths behave the same in
// all of this, and report the same Ended and Closed to the Observer.
package proxy
