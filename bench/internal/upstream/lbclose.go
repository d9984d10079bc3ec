package upstream

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"sync"
	"time"
)

// CloseAfterHello is an upstream that fails every handshake as a load
// balancer with no healthy backend does: it reads the client's first TLS
// record (the ClientHello) and closes the connection with a FIN, sending
// nothing. The Contrast CLI sees "authentication handshake failed: EOF",
// ccproxy names it lb_closed_early, and the CLI retries at once: a storm.
type CloseAfterHello struct{}

// Serve accepts connections on ln until ctx ends, then closes ln and
// waits for the connections' goroutines.
func (CloseAfterHello) Serve(ctx context.Context, ln net.Listener) error {
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		wg.Go(func() {
			defer c.Close()
			c.SetReadDeadline(time.Now().Add(HandshakeTimeout))
			var hdr [5]byte
			if _, err := io.ReadFull(c, hdr[:]); err != nil {
				return
			}
			io.CopyN(io.Discard, c, int64(binary.BigEndian.Uint16(hdr[3:])))
		})
	}
}
