//go:build !linux

package proxy

import "net"

// socketAlive cannot tell without Linux's MSG_PEEK|MSG_DONTWAIT semantics;
// report the source as broken, which resets both sides either way.
func socketAlive(net.Conn) bool { return false }

// peerReset needs Linux's TCP_INFO; elsewhere an EOF stays an EOF.
func peerReset(net.Conn) bool { return false }

// waitQueued lets the copy itself wait where SIOCINQ is not available.
func waitQueued(net.Conn) (int, error) { return spliceChunk, nil }
