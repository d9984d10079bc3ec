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
// handed to the connection's Observer. Once the Observer says it has seen
// enough (the handshake is over), each direction waits for its source
// holding no buffer, moves a small message with one read and one write
// through a pooled buffer, and a stream with io.Copy between the two
// *net.TCPConn, which on Linux is splice(2): the kernel moves the bytes.
//
// Half-close is forwarded: a FIN from one side becomes CloseWrite on the
// other, and the opposite direction keeps running until it ends too. A reset
// (or a failed write) on one side resets the other.
package proxy
