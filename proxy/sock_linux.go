package proxy

import (
	"encoding/binary"
	"errors"
	"net"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// waitQueued waits, holding no buffer and no pipe, until c has bytes to
// read, EOF or an error, and returns how many bytes are queued (0 at EOF).
// It honours c's read deadline.
func waitQueued(c net.Conn) (int, error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		// Not a socket (a tunnel stream): let the copy itself wait.
		return spliceChunk, nil
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return 0, err
	}
	var (
		queued int
		serr   error
		b      [1]byte
	)
	cerr := raw.Read(func(fd uintptr) bool {
		if n, err := unix.IoctlGetInt(int(fd), unix.SIOCINQ); err == nil && n > 0 {
			queued = n
			return true
		}
		// Nothing queued: EOF, an error, or not yet.
		m, _, rerr := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		switch {
		case errors.Is(rerr, syscall.EAGAIN):
			return false // wait for readiness
		case rerr != nil:
			serr = &net.OpError{Op: "read", Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: os.NewSyscallError("recvfrom", rerr)}
		case m > 0:
			queued = m
		}
		return true
	})
	if cerr != nil {
		return 0, cerr
	}
	return queued, serr
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
// (tcp_info.tcpi_state, the first byte of TCP_INFO; reading only four
// bytes of it is allowed, the kernel copies min(optlen, sizeof)).
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
	cerr := raw.Control(func(fd uintptr) {
		v, err := syscall.GetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_INFO)
		if err == nil {
			var b [4]byte
			binary.NativeEndian.PutUint32(b[:], uint32(v))
			state = b[0]
		}
	})
	return cerr == nil && state == tcpClose
}
