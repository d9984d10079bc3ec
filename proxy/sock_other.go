//go:build !linux

package proxy

import (
	"errors"
	"io"
	"net"
)

// socketAlive cannot tell without Linux's MSG_PEEK|MSG_DONTWAIT semantics;
// report the source as broken, which resets both sides either way.
func socketAlive(net.Conn) bool { return false }

// peerReset needs Linux's TCP_INFO; elsewhere an EOF stays an EOF.
func peerReset(net.Conn) bool { return false }

// readReady reads with c's own Read where raw readiness is not used.
func readReady(c net.Conn) (buf *[largeBuf]byte, n int, err error) {
	buf = largeBufs.Get().(*[largeBuf]byte)
	n, err = c.Read(buf[:])
	if errors.Is(err, io.EOF) && n == 0 {
		err = nil
	}
	return buf, n, err
}

// queuedNow needs Linux's SIOCINQ; elsewhere every read goes through the
// buffer.
func queuedNow(net.Conn) int { return 0 }

// listenConfig is the default: Go sets keep-alive on each accepted
// connection.
func listenConfig() net.ListenConfig { return net.ListenConfig{} }
