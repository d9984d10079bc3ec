//go:build !linux

package proxy

// Without epoll every connection stays on its two goroutines.

type loopConn struct{}
type evLoop struct{}

type loopCmd struct {
	c      *loopConn
	dir    Direction
	op     loopOp
	closed bool
}

type loopOp uint8

const opGoEnded loopOp = 1

func (*evLoop) post(loopCmd) {}

func loopAvailable() bool            { return false }
func (r *relay) join(Direction) bool { return false }
func (r *relay) abortInLoop()        {}

// StartLoops does nothing where there is no event loop.
func StartLoops() error { return nil }
