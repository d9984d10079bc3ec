//go:build linux

package proxy

import (
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The event loop carries connections past their inspection. Each
// direction joins it on its own, once the observer has seen enough of it:
// the first to join makes duplicates of both sockets, which the loop's
// epoll watches; once every direction still running is in the loop, the
// net.Conns are closed, which takes the sockets out of Go's poller (the
// duplicates keep them open). An idle connection then holds no goroutine
// and no buffer, only its loopConn (and the relay and observer state it
// points to) and its two sockets. A direction still being inspected keeps
// its goroutine and the net.Conns meanwhile; both work on the same sockets.
//
// For each direction, when its source is readable the loop reads once into
// the loop's buffer and writes the bytes on: a small message costs
// epoll_wait, read and write. A read that fills the buffer means a stream:
// the rest moves with splice(2) through the loop's pipe, the kernel copying.
// When the destination cannot take everything, the direction keeps what is
// left (a copy of the bytes, or the pipe itself, and the loop takes a fresh
// pipe), stops reading its source and waits for the destination to be
// writable; so a slow reader slows its writer, as TCP does end to end.
//
// How a direction ends is forwarded exactly as the goroutine path does
// (relay.finish): a FIN (read returned 0 on a socket that was not reset)
// becomes shutdown(SHUT_WR) on the destination and the other direction runs
// on; a reset or read error resets the destination and closes the source;
// a failed write resets the source and closes the destination. When one
// direction's end closed both sockets, the other ends too, with the error
// its next read would have returned (the socket closed under it), or
// ErrAborted at shutdown. The idle timeout is a sweep over the loop's
// connections (both directions quiet for the idle timeout); drain (the
// Proxy's drain timeout reached) aborts a connection through the loop's
// queue, ending its directions with ErrAborted and closing both sockets.
// The observer's Ended is called on the loop thread; Closed (which may wait
// for an evidence check or a probe) on a fresh goroutine, once both
// directions ended.

const (
	loopBufSize    = 64 << 10 // one per loop; a read that fills it starts splicing
	loopPipeSize   = 1 << 20  // asked of the kernel for each pipe (F_SETPIPE_SZ), as Go's own splice does
	loopBudget     = 4 << 20  // bytes one direction may move per wake-up before others get a turn
	loopMaxThreads = 4
	loopPipePool   = 8 // empty pipes a loop keeps for the next stream
	// loopMaxPipes bounds the pipes one loop holds (pooled, or holding a
	// stalled direction's bytes), as HAProxy's maxpipes does: without it
	// every direction whose destination is full keeps two descriptors,
	// and enough slow readers would leave none for accept and dial. A
	// direction that finds none free moves its bytes through the loop's
	// buffer instead, a read and a write per wake-up.
	loopMaxPipes = 256
	loopEvents   = 256
)

var (
	loopsOnce = sync.OnceValue(startLoops)
	loopNext  uint32
	loopMu    sync.Mutex
)

// loopSet is the process's event loops, started on the first hand-off.
type loopSet struct {
	loops []*evLoop
	err   error
}

func startLoops() *loopSet {
	n := min(runtime.NumCPU(), loopMaxThreads)
	set := &loopSet{}
	for range n {
		l, err := newEvLoop()
		if err != nil {
			set.err = err
			break
		}
		set.loops = append(set.loops, l)
		go l.run()
	}
	return set
}

// pickLoop returns the loop a new connection goes to (round robin), or nil
// when none could be started.
func pickLoop() *evLoop {
	set := loopsOnce()
	if len(set.loops) == 0 {
		return nil
	}
	loopMu.Lock()
	l := set.loops[loopNext%uint32(len(set.loops))]
	loopNext++
	loopMu.Unlock()
	return l
}

// pipePair is a pipe for splice(2); size is what it holds.
type pipePair struct{ r, w, size int }

// newPipe makes a pipe of loopPipeSize if the kernel allows (else of its
// default size, 64 KiB): a larger pipe moves a stream with fewer calls.
func newPipe() (pipePair, error) {
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_NONBLOCK|unix.O_CLOEXEC); err != nil {
		return pipePair{-1, -1, 0}, err
	}
	size, err := unix.FcntlInt(uintptr(p[1]), unix.F_SETPIPE_SZ, loopPipeSize)
	if err != nil {
		size = 64 << 10
	}
	return pipePair{p[0], p[1], size}, nil
}

func (p pipePair) close() {
	unix.Close(p.r)
	unix.Close(p.w)
}

// pending is what one direction could not yet write to its destination.
type pending struct {
	buf    []byte    // bytes read but not yet written
	pipe   *pipePair // or: a pipe holding inPipe bytes
	inPipe int
}

func (p *pending) empty() bool { return len(p.buf) == 0 && p.inPipe == 0 }

// Where a direction is, as the loop sees it.
const (
	lcGo    uint8 = iota // on its goroutine (inspecting or forwarding)
	lcRun                // carried by the loop
	lcEnded              // ended, here or on its goroutine
)

// loopConn is a connection in the loop. Side 0 is the client socket, side
// 1 the upstream's; direction d reads side d and writes side 1-d. Only the
// loop thread touches it after the first join.
type loopConn struct {
	r      *relay
	fd     [2]int    // duplicates of the sockets
	ev     [2]uint32 // events registered per side, 0 when not registered
	state  [2]uint8  // per direction
	pend   [2]pending
	goOpen bool // the relay's net.Conns are still open
	added  bool // in the loop's tables
	closed bool // the duplicates are closed
}

type fdEntry struct {
	c    *loopConn
	side uint8
}

type loopOp uint8

const (
	opJoin    loopOp = iota // dir joins the loop
	opGoEnded               // dir ended on its goroutine; closed: it closed both sockets
	opAbort                 // the drain timeout: end everything
)

type loopCmd struct {
	c      *loopConn
	dir    Direction
	op     loopOp
	closed bool
}

// evLoop is one epoll instance served by one locked OS thread.
type evLoop struct {
	epfd, wake int

	mu    sync.Mutex
	queue []loopCmd

	// Owned by the loop thread.
	byFD   []fdEntry
	conns  map[*loopConn]struct{}
	buf    []byte
	pipes  []pipePair
	npipes int // pipes open: pooled and pending (≤ maxPipes)
	// maxPipes is loopMaxPipes; tests lower it to drive the buffered
	// path.
	maxPipes  atomic.Int32
	minIdle   time.Duration
	nextSweep time.Time
}

func newEvLoop() (*evLoop, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("epoll_create1", err)
	}
	wake, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		unix.Close(epfd)
		return nil, os.NewSyscallError("eventfd", err)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(wake)}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, wake, &ev); err != nil {
		unix.Close(epfd)
		unix.Close(wake)
		return nil, os.NewSyscallError("epoll_ctl", err)
	}
	l := &evLoop{epfd: epfd, wake: wake, conns: make(map[*loopConn]struct{})}
	l.maxPipes.Store(loopMaxPipes)
	return l, nil
}

// post queues a command for the loop thread and wakes it.
func (l *evLoop) post(cmd loopCmd) {
	l.mu.Lock()
	l.queue = append(l.queue, cmd)
	first := len(l.queue) == 1
	l.mu.Unlock()
	if first {
		var one = [8]byte{1}
		unix.Write(l.wake, one[:])
	}
}

func (l *evLoop) run() {
	runtime.LockOSThread() // never unlocked: the thread serves this loop only
	events := make([]unix.EpollEvent, loopEvents)
	l.buf = make([]byte, loopBufSize)
	for {
		timeout := -1
		if l.minIdle > 0 && len(l.conns) > 0 {
			timeout = max(int(time.Until(l.nextSweep)/time.Millisecond), 0) + 1
		}
		n, err := unix.EpollWait(l.epfd, events, timeout)
		if err != nil && err != unix.EINTR {
			panic("proxy: epoll_wait: " + err.Error())
		}
		for i := range max(n, 0) {
			fd := int(events[i].Fd)
			if fd == l.wake {
				var b [8]byte
				unix.Read(l.wake, b[:])
				continue
			}
			if fd < len(l.byFD) && l.byFD[fd].c != nil {
				e := l.byFD[fd]
				l.ready(e.c, int(e.side), events[i].Events)
			}
		}
		l.commands()
		if l.minIdle > 0 && !time.Now().Before(l.nextSweep) {
			l.sweep()
		}
	}
}

func (l *evLoop) commands() {
	l.mu.Lock()
	q := l.queue
	l.queue = nil
	l.mu.Unlock()
	for _, cmd := range q {
		switch cmd.op {
		case opJoin:
			l.join(cmd.c, int(cmd.dir))
		case opGoEnded:
			l.goEnded(cmd.c, int(cmd.dir), cmd.closed)
		case opAbort:
			l.abort(cmd.c)
		}
	}
}

// join starts carrying direction d of c.
func (l *evLoop) join(c *loopConn, d int) {
	if !c.added {
		c.added = true
		l.conns[c] = struct{}{}
		for s := range 2 {
			if c.fd[s] >= len(l.byFD) {
				grown := make([]fdEntry, max(c.fd[s]+1, 2*len(l.byFD)))
				copy(grown, l.byFD)
				l.byFD = grown
			}
			l.byFD[c.fd[s]] = fdEntry{c: c, side: uint8(s)}
		}
		if idle := c.r.idle; idle > 0 && (l.minIdle == 0 || idle < l.minIdle) {
			l.minIdle = idle
			l.nextSweep = time.Now().Add(l.sweepEvery())
		}
	}
	if c.closed {
		// Both sockets were closed while d was on its way here.
		c.state[d] = lcEnded
		c.r.obs.Ended(Direction(d), c.r.closedErr(Direction(d)), time.Now())
		l.endOne(c)
		return
	}
	c.state[d] = lcRun
	// The other direction, if still on its goroutine, reads this one's
	// last byte time for the idle timeout (relay.idleExpired); a direction
	// in the loop agrees to idle whenever it has been quiet that long.
	c.r.act[d].idle.Store(true)
	l.dropGoConns(c)
	// Bytes may have arrived before the join: level-triggered epoll
	// reports them at once.
	l.interest(c, 0)
	l.interest(c, 1)
}

// dropGoConns closes the relay's net.Conns once no goroutine uses them:
// every direction is in the loop or ended.
func (l *evLoop) dropGoConns(c *loopConn) {
	if c.goOpen && c.state[0] != lcGo && c.state[1] != lcGo {
		c.goOpen = false
		r := c.r
		r.client.Close()
		r.upstream.Close()
		// Keep only the addresses (for error messages), not the closed
		// net.Conns' descriptors and poller state.
		r.upMu.Lock()
		r.client = closedConn{local: r.client.LocalAddr(), remote: r.client.RemoteAddr()}
		r.upstream = closedConn{local: r.upstream.LocalAddr(), remote: r.upstream.RemoteAddr()}
		r.upMu.Unlock()
	}
}

// closedConn stands in for a net.Conn whose socket the event loop owns
// now: it remembers the addresses; every operation fails as on a closed
// net.Conn.
type closedConn struct{ local, remote net.Addr }

func (closedConn) Read([]byte) (int, error)         { return 0, net.ErrClosed }
func (closedConn) Write([]byte) (int, error)        { return 0, net.ErrClosed }
func (closedConn) Close() error                     { return net.ErrClosed }
func (c closedConn) LocalAddr() net.Addr            { return c.local }
func (c closedConn) RemoteAddr() net.Addr           { return c.remote }
func (closedConn) SetDeadline(time.Time) error      { return net.ErrClosed }
func (closedConn) SetReadDeadline(time.Time) error  { return net.ErrClosed }
func (closedConn) SetWriteDeadline(time.Time) error { return net.ErrClosed }

// goEnded: direction d ended on its goroutine. If its end closed the
// sockets (anything but a FIN), the directions here end too.
func (l *evLoop) goEnded(c *loopConn, d int, closed bool) {
	c.state[d] = lcEnded
	if closed {
		l.closeConn(c, -1)
	} else {
		l.dropGoConns(c)
		l.interest(c, 0)
		l.interest(c, 1)
		l.releaseIfDone(c)
	}
	l.endOne(c)
}

// endOne counts one direction's end; the last one's closes the connection
// for the relay (observer's Closed, the Proxy's done) on a goroutine.
func (l *evLoop) endOne(c *loopConn) {
	if c.r.left.Add(-1) == 0 {
		go c.r.closeAll()
	}
}

func (l *evLoop) sweepEvery() time.Duration {
	return min(max(l.minIdle/4, 5*time.Millisecond), time.Second)
}

// sweep ends every connection whose directions are all here (or ended)
// and were quiet for its idle timeout.
func (l *evLoop) sweep() {
	now := time.Now()
	l.nextSweep = now.Add(l.sweepEvery())
	for c := range l.conns {
		r := c.r
		if r.idle <= 0 || c.state[0] == lcGo || c.state[1] == lcGo {
			continue
		}
		last := max(r.act[0].lastData.Load(), r.act[1].lastData.Load())
		if now.UnixNano()-last >= int64(r.idle) {
			l.idleOut(c)
		}
	}
}

// interest registers side s for what the connection now waits for on it:
// readable while direction s runs and has nothing pending, writable while
// direction 1-s has bytes pending.
func (l *evLoop) interest(c *loopConn, s int) {
	if c.closed {
		return
	}
	var want uint32
	if c.state[s] == lcRun && c.pend[s].empty() {
		want |= unix.EPOLLIN
	}
	if c.state[1-s] == lcRun && !c.pend[1-s].empty() {
		want |= unix.EPOLLOUT
	}
	if want == c.ev[s] {
		return
	}
	ev := unix.EpollEvent{Events: want, Fd: int32(c.fd[s])}
	var err error
	switch {
	case c.ev[s] == 0:
		err = unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, c.fd[s], &ev)
	case want == 0:
		err = unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, c.fd[s], nil)
	default:
		err = unix.EpollCtl(l.epfd, unix.EPOLL_CTL_MOD, c.fd[s], &ev)
	}
	if err != nil {
		// Cannot watch the socket (out of kernel memory): end what
		// depends on it rather than leave it unwatched forever.
		l.endDir(c, s, os.NewSyscallError("epoll_ctl", err))
		return
	}
	c.ev[s] = want
}

// ready handles readiness on side s.
func (l *evLoop) ready(c *loopConn, s int, events uint32) {
	if events&(unix.EPOLLOUT|unix.EPOLLERR|unix.EPOLLHUP) != 0 && c.state[1-s] == lcRun && !c.pend[1-s].empty() {
		l.flush(c, 1-s)
	}
	if c.closed {
		return
	}
	if events&(unix.EPOLLIN|unix.EPOLLERR|unix.EPOLLHUP|unix.EPOLLRDHUP) != 0 && c.state[s] == lcRun && c.pend[s].empty() {
		l.forward(c, s)
	}
}

// forward moves what side d's socket has queued to side 1-d.
func (l *evLoop) forward(c *loopConn, d int) {
	src, dst := c.fd[d], c.fd[1-d]
	n, err := readFD(src, l.buf)
	switch {
	case err == unix.EAGAIN:
		return
	case err != nil:
		l.endDir(c, d, c.r.readErr(Direction(d), err))
		return
	case n == 0:
		l.eof(c, d)
		return
	}
	l.moved(c, d, n)
	if !l.write(c, d, l.buf[:n]) || n < len(l.buf) {
		return // pending, ended, or one message: the next wake-up says more
	}
	// The buffer filled: a stream. Let the kernel move the rest.
	budget := loopBudget
	for budget > 0 {
		p, err := l.pipe()
		if err != nil {
			return // no pipe (the loop's limit, or descriptors exhausted): the next wake-up reads through the buffer again
		}
		in, err := unix.Splice(src, nil, p.w, nil, p.size, unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			return
		case err != nil:
			l.endDir(c, d, c.r.readErr(Direction(d), err))
			return
		case in == 0:
			l.eof(c, d)
			return
		}
		l.moved(c, d, int(in))
		budget -= int(in)
		left, err := spliceOut(p, dst, int(in))
		if err != nil {
			// The pipe may still hold this connection's bytes: it must
			// never carry another's.
			l.pipes = l.pipes[:len(l.pipes)-1]
			l.closePipe(p)
			l.endDir(c, d, c.r.writeErr(Direction(d), err))
			return
		}
		if left > 0 {
			// dst is full: the pipe now belongs to this direction.
			l.pipes = l.pipes[:len(l.pipes)-1]
			pp := p
			c.pend[d] = pending{pipe: &pp, inPipe: left}
			l.interest(c, d)
			l.interest(c, 1-d)
			return
		}
	}
}

// errPipeCap is the loop holding loopMaxPipes pipes already.
var errPipeCap = errors.New("event loop: pipe limit reached")

// pipe returns an empty pipe for splicing, the last in l.pipes.
func (l *evLoop) pipe() (pipePair, error) {
	if len(l.pipes) == 0 {
		if l.npipes >= int(l.maxPipes.Load()) {
			return pipePair{-1, -1, 0}, errPipeCap
		}
		p, err := newPipe()
		if err != nil {
			return p, err
		}
		l.npipes++
		l.pipes = append(l.pipes, p)
	}
	return l.pipes[len(l.pipes)-1], nil
}

// closePipe closes a pipe of the loop's.
func (l *evLoop) closePipe(p pipePair) {
	p.close()
	l.npipes--
}

// spliceOut moves up to n bytes from p to dst, returning how many are
// left in p (dst would block).
func spliceOut(p pipePair, dst, n int) (int, error) {
	for n > 0 {
		out, err := unix.Splice(p.r, nil, dst, nil, n, unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			return n, nil
		case err != nil:
			return n, err
		}
		n -= int(out)
	}
	return 0, nil
}

// write writes b (read in direction d) to side 1-d. It reports whether
// the direction may go on reading: false when the rest is pending or the
// direction ended.
func (l *evLoop) write(c *loopConn, d int, b []byte) bool {
	for len(b) > 0 {
		n, err := unix.Write(c.fd[1-d], b)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			c.pend[d] = pending{buf: append([]byte(nil), b...)}
			l.interest(c, d)
			l.interest(c, 1-d)
			return false
		case err != nil:
			l.endDir(c, d, c.r.writeErr(Direction(d), err))
			return false
		}
		b = b[n:]
	}
	return true
}

// flush writes what direction d has pending, now that side 1-d is
// writable (or failed).
func (l *evLoop) flush(c *loopConn, d int) {
	p := &c.pend[d]
	dst := c.fd[1-d]
	if p.pipe != nil {
		left, err := spliceOut(*p.pipe, dst, p.inPipe)
		if err != nil {
			l.endDir(c, d, c.r.writeErr(Direction(d), err))
			return
		}
		p.inPipe = left
		if left > 0 {
			return
		}
		l.putPipe(*p.pipe)
		*p = pending{}
	} else {
		for len(p.buf) > 0 {
			n, err := unix.Write(dst, p.buf)
			if err == unix.EINTR {
				continue
			}
			if err == unix.EAGAIN {
				return
			}
			if err != nil {
				l.endDir(c, d, c.r.writeErr(Direction(d), err))
				return
			}
			p.buf = p.buf[n:]
		}
		*p = pending{}
	}
	l.interest(c, d)
	l.interest(c, 1-d)
}

func (l *evLoop) putPipe(p pipePair) {
	if len(l.pipes) < loopPipePool {
		l.pipes = append(l.pipes, p)
		return
	}
	l.closePipe(p)
}

func (l *evLoop) moved(c *loopConn, d, n int) {
	c.r.count(Direction(d), n)
	c.r.act[d].lastData.Store(time.Now().UnixNano())
}

// eof ends direction d on a read of 0 bytes: a FIN, unless the socket was
// in fact reset (see relay.readEOFWasReset).
func (l *evLoop) eof(c *loopConn, d int) {
	r := c.r
	if r.finSent[1-d].Load() {
		l.endDir(c, d, io.EOF) // our FIN went first: EOF stays EOF
		return
	}
	reset := tcpStateFD(c.fd[d]) == tcpClose || r.dstFailed[1-d].Load()
	if reset && !r.finSent[1-d].Load() {
		l.endDir(c, d, errPeerReset)
		return
	}
	l.endDir(c, d, io.EOF)
}

// idleOut ends a connection quiet for its idle timeout as the goroutine
// path does when its client direction's deadline fires first: that
// direction ends with ErrIdle, resets the upstream and closes the client;
// the other ends with the closed socket's error.
func (l *evLoop) idleOut(c *loopConn) {
	for d := range 2 {
		if c.state[d] == lcRun {
			l.endDir(c, d, ErrIdle)
		}
	}
}

// abort ends a connection at the drain timeout as relay.abort does on the
// goroutine path: both sockets closed (a FIN, or a reset where unread bytes
// remain), every direction ended with ErrAborted.
func (l *evLoop) abort(c *loopConn) {
	if !c.added || c.closed {
		return
	}
	l.closeConn(c, -1) // ends the directions here: closedErr is ErrAborted once aborted
}

// endDir ends direction d (running here) with err and forwards the end as
// relay.finish does: FIN as FIN, anything else as a reset.
func (l *evLoop) endDir(c *loopConn, d int, err error) {
	if c.state[d] != lcRun {
		return
	}
	r := c.r
	c.state[d] = lcEnded
	if p := c.pend[d].pipe; p != nil {
		l.closePipe(*p) // it may hold bytes: never reuse it
	}
	c.pend[d] = pending{}
	if r.aborted.Load() {
		err = ErrAborted
	}
	r.hmu.Lock()
	r.dstate[d] = dirEnded
	r.hmu.Unlock()
	r.act[d].idle.Store(true)
	r.obs.Ended(Direction(d), err, time.Now())
	switch {
	case c.closed:
	case errors.Is(err, io.EOF):
		r.finSent[d].Store(true)
		unix.Shutdown(c.fd[1-d], unix.SHUT_WR)
		l.interest(c, 0)
		l.interest(c, 1)
		l.dropGoConns(c)
		l.releaseIfDone(c)
	case errors.Is(err, ErrWrite):
		r.dstFailed[d].Store(true)
		l.closeConn(c, d)
	default:
		l.closeConn(c, 1-d)
	}
	l.endOne(c)
}

// releaseIfDone closes the duplicates once both directions ended. Not
// before: a direction still on its goroutine may yet join (or its join be
// on the way here).
func (l *evLoop) releaseIfDone(c *loopConn) {
	if c.state[0] == lcEnded && c.state[1] == lcEnded {
		l.release(c)
	}
}

// release forgets c and closes its duplicates.
func (l *evLoop) release(c *loopConn) {
	if c.closed {
		return
	}
	c.closed = true
	for s := range 2 {
		if c.ev[s] != 0 {
			unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, c.fd[s], nil)
			c.ev[s] = 0
		}
		if l.byFD[c.fd[s]].c == c {
			l.byFD[c.fd[s]] = fdEntry{}
		}
		unix.Close(c.fd[s])
	}
	for d := range 2 {
		if p := c.pend[d].pipe; p != nil {
			l.closePipe(*p)
		}
		c.pend[d] = pending{}
	}
	delete(l.conns, c)
	if len(l.conns) == 0 {
		// Nothing left to carry: hand the spare pipes back too.
		for _, p := range l.pipes {
			l.closePipe(p)
		}
		l.pipes = l.pipes[:0]
	}
}

// closeConn closes both sockets, resetting side reset (if ≥ 0), as the
// goroutine path's Close of both net.Conns does. A direction still running
// here ends with the error its next read would have seen; one still on
// its goroutine sees its net.Conn closed and ends there.
func (l *evLoop) closeConn(c *loopConn, reset int) {
	if c.closed {
		return
	}
	if reset >= 0 {
		unix.SetsockoptLinger(c.fd[reset], unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
	}
	if c.goOpen {
		c.goOpen = false
		c.r.client.Close()
		c.r.upstream.Close()
	}
	l.release(c)
	for d := range 2 {
		if c.state[d] == lcRun {
			c.state[d] = lcEnded
			c.r.hmu.Lock()
			c.r.dstate[d] = dirEnded
			c.r.hmu.Unlock()
			c.r.obs.Ended(Direction(d), c.r.closedErr(Direction(d)), time.Now())
			l.endOne(c)
		}
	}
}

// readFD reads into b, retrying on EINTR.
func readFD(fd int, b []byte) (int, error) {
	for {
		n, err := unix.Read(fd, b)
		if err != unix.EINTR {
			return n, err
		}
	}
}

// dupConn returns a duplicate of c's socket descriptor (close-on-exec,
// non-blocking like the original).
func dupConn(c net.Conn) (int, error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return -1, errors.New("not a socket")
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return -1, err
	}
	nfd := -1
	var derr error
	if err := raw.Control(func(fd uintptr) {
		nfd, derr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil {
		return -1, err
	}
	if derr != nil {
		return -1, os.NewSyscallError("fcntl(F_DUPFD_CLOEXEC)", derr)
	}
	return nfd, nil
}

// loopAvailable tells whether directions can move to the event loop.
func loopAvailable() bool { return true }

// join moves direction dir, past its inspection, to the event loop. It
// reports false (dir stays on its goroutine) when it cannot: the other
// direction already ended, not both TCP sockets, no descriptor for the
// duplicates, no loop, or the relay aborted.
func (r *relay) join(dir Direction) bool {
	r.hmu.Lock()
	defer r.hmu.Unlock()
	if r.dstate[1-dir] == dirEnded || r.aborted.Load() {
		return false
	}
	if r.inLoop == nil {
		if !r.newLoopConn() {
			return false
		}
	}
	r.dstate[dir] = dirInLoop
	r.loop.post(loopCmd{c: r.inLoop, dir: dir, op: opJoin})
	return true
}

// newLoopConn makes r's loopConn: duplicates of both sockets, a loop.
func (r *relay) newLoopConn() bool {
	if _, ok := r.client.(*net.TCPConn); !ok {
		return false
	}
	if _, ok := r.upstream.(*net.TCPConn); !ok {
		return false
	}
	l := pickLoop()
	if l == nil {
		return false
	}
	cfd, err := dupConn(r.client)
	if err != nil {
		return false
	}
	ufd, err := dupConn(r.upstream)
	if err != nil {
		unix.Close(cfd)
		return false
	}
	r.inLoop, r.loop = &loopConn{r: r, fd: [2]int{cfd, ufd}, goOpen: true}, l
	return true
}

// abortInLoop asks the loop to abort r's connection; called with r.hmu held.
func (r *relay) abortInLoop() {
	if r.inLoop != nil {
		r.loop.post(loopCmd{c: r.inLoop, op: opAbort})
	}
}

// StartLoops starts the event loops now rather than when the first
// connection finishes its inspection. They live as long as the process:
// one locked OS thread, one epoll and one eventfd descriptor each (a
// goroutine and two descriptors per loop, which a leak check counts once).
func StartLoops() error {
	set := loopsOnce()
	return set.err
}
