package proxy

import (
	"errors"
	"net"
	"syscall"
)

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
