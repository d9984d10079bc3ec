package inspect_test

import (
	"fmt"

	"github.com/ccproxy-dev/ccproxy/proxy/inspect"
)

func ExampleNewConn() {
	c2s, s2c := inspect.NewConn(func(ev inspect.Event) { fmt.Println(ev) })

	// A server that cannot issue its certificate answers the ClientHello
	// with a plaintext internal_error alert.
	s2c.Write([]byte{21, 3, 3, 0, 2, 2, 80})
	// A client speaking plain HTTP to the TLS port.
	c2s.Write([]byte("GET / HTTP/1.1\r\nHost: coordinator\r\n\r\n"))
	fmt.Println("client direction done:", c2s.Done())
	// Output:
	// server_to_client alert @0 fatal internal_error (80)
	// client_to_server not_tls @0: not TLS: first record type 71 (0x47) is neither handshake (22) nor alert (21); first bytes 474554202f20485454502f312e310d0a "GET / HTTP/1.1\r\n", looks like an HTTP request
	// client direction done: true
}
