//go:build !linux

package proxy

import "net"

// socketAlive cannot tell without Linux's MSG_PEEK|MSG_DONTWAIT semantics;
// report the source as broken, which resets both sides either way.
func socketAlive(net.Conn) bool { return false }
