package proxy

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// readReady waits, holding no buffer, until c has bytes to read, EOF or an
// error, then reads what is queued (up to largeBuf bytes) into a buffer
// from largeBufs, which the caller puts back. n == 0 with a nil error is
// EOF. It honours c's read deadline. A connection that is no socket (a
// tunnel stream) is read with its own Read, holding the buffer while it
// waits.
func readReady(c net.Conn) (buf *[largeBuf]byte, n int, err error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		buf = largeBufs.Get().(*[largeBuf]byte)
		n, err = c.Read(buf[:])
		if errors.Is(err, io.EOF) && n == 0 {
			err = nil
		}
		return buf, n, err
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return nil, 0, err
	}
	var rerr error
	cerr := raw.Read(func(fd uintptr) bool {
		b := largeBufs.Get().(*[largeBuf]byte)
		for {
			n, rerr = syscall.Read(int(fd), b[:])
			if rerr != syscall.EINTR {
				break
			}
		}
		if rerr == syscall.EAGAIN {
			largeBufs.Put(b)
			return false // wait for readiness, holding nothing
		}
		buf = b
		return true
	})
	if cerr != nil {
		if buf != nil {
			largeBufs.Put(buf)
		}
		return nil, 0, cerr
	}
	if rerr != nil {
		return buf, 0, &net.OpError{Op: "read", Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: os.NewSyscallError("read", rerr)}
	}
	return buf, max(n, 0), nil
}

// queuedNow returns how many bytes c has queued for reading right now,
// without waiting; 0 when none, at EOF, on an error, or when c is no
// socket.
func queuedNow(c net.Conn) int {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return 0
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return 0
	}
	queued := 0
	raw.Control(func(fd uintptr) {
		if n, err := unix.IoctlGetInt(int(fd), unix.SIOCINQ); err == nil {
			queued = n
		}
	})
	return queued
}

// socketAlive peeks at c without blocking: it is alive when it has data to
// read or would block; a socket that reports EOF or an error is not.
func socketAlive(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	alive := false
	var b [1]byte
	cerr := raw.Read(func(fd uintptr) bool {
		n, _, rerr := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		alive = n > 0 || errors.Is(rerr, syscall.EAGAIN)
		return true // never wait for readiness
	})
	return alive && cerr == nil
}

// tcpClose is TCP_CLOSE in Linux's tcp_states.h: where a connection is
// after a reset, and after a FIN once this side had sent its own.
const tcpClose = 7

// peerReset reports whether c's TCP connection is in the CLOSE state
// (see tcpStateFD).
func peerReset(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	var state byte
	cerr := raw.Control(func(fd uintptr) { state = tcpStateFD(int(fd)) })
	return cerr == nil && state == tcpClose
}

// tcpStateFD returns the TCP state of socket fd (tcp_info.tcpi_state, the
// first byte of TCP_INFO; reading only four bytes of it is allowed, the
// kernel copies min(optlen, sizeof)), or 0 when it cannot be read.
func tcpStateFD(fd int) byte {
	v, err := syscall.GetsockoptInt(fd, syscall.IPPROTO_TCP, syscall.TCP_INFO)
	if err != nil {
		return 0
	}
	var b [4]byte
	binary.NativeEndian.PutUint32(b[:], uint32(v))
	return b[0]
}

// Go's TCP keep-alive defaults (net.KeepAliveConfig), which Go otherwise
// sets on every accepted connection with four setsockopt calls.
const (
	keepAliveIdle     = 15 * time.Second
	keepAliveInterval = 15 * time.Second
	keepAliveCount    = 9
)

// listenConfig sets TCP keep-alive once, on the listening socket: Linux
// copies it to every connection the socket accepts, so accepted
// connections get Go's defaults without four system calls each.
func listenConfig() net.ListenConfig {
	return net.ListenConfig{
		KeepAlive: -1, // not per connection: inherited from the listener
		Control: func(_, _ string, c syscall.RawConn) error {
			var serr error
			err := c.Control(func(fd uintptr) {
				for _, o := range []struct{ level, opt, v int }{
					{syscall.SOL_SOCKET, syscall.SO_KEEPALIVE, 1},
					{syscall.IPPROTO_TCP, syscall.TCP_KEEPIDLE, int(keepAliveIdle / time.Second)},
					{syscall.IPPROTO_TCP, syscall.TCP_KEEPINTVL, int(keepAliveInterval / time.Second)},
					{syscall.IPPROTO_TCP, syscall.TCP_KEEPCNT, keepAliveCount},
				} {
					if err := syscall.SetsockoptInt(int(fd), o.level, o.opt, o.v); err != nil {
						serr = os.NewSyscallError("setsockopt", err)
						return
					}
				}
			})
			if err != nil {
				return err
			}
			return serr
		},
	}
}
