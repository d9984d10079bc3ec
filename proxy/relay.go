package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Direction names one half of a relayed connection.
type Direction uint8

const (
	ClientToUpstream Direction = iota
	UpstreamToClient
)

func (d Direction) String() string {
	if d == ClientToUpstream {
		return "client_to_upstream"
	}
	return "upstream_to_client"
}

// Stats is what the relay counted for one connection.
type Stats struct {
	ClientToUpstream int64
	UpstreamToClient int64
	Closed           time.Time
}

// Observer watches one relayed connection. The relay calls Data and Ended
// for a direction from that direction's copy goroutine, or Ended from the
// event loop's thread once the direction moved there, so the two
// directions call concurrently: implementations synchronize themselves.
// No method but Closed may block for long: forwarding of the next chunk
// waits for Data to return, and the event loop's thread serves many
// connections. Closed may take its time: it runs after both directions
// ended, on the last one's goroutine or on a fresh one.
type Observer interface {
	// Dialed reports the upstream dial's outcome and how long it took. On
	// error the client connection is closed and only Closed follows.
	Dialed(upstream net.Conn, err error, took time.Duration)
	// Data is called with bytes just written to the other side. It must not
	// retain p.
	Data(dir Direction, p []byte, at time.Time)
	// Inspecting reports whether the observer still wants Data for dir. Once
	// it returns false the relay hands that direction to the kernel (splice)
	// and never asks again.
	Inspecting(dir Direction) bool
	// Ended reports that dir's source stopped: io.EOF for an orderly FIN,
	// otherwise the read or write error (reset, idle timeout, forced close).
	Ended(dir Direction, err error, at time.Time)
	// Closed is called once, after both connections are closed.
	Closed(s Stats)
}

// HelloObserver is an Observer that can tell when the client's opening
// message (the TLS ClientHello) is complete. On an inspected route the relay
// then holds the client to the Proxy's ClientHelloTimeout: a client that
// connects and sends nothing, or only part of a ClientHello, is reset when
// it runs out instead of holding a slot until the idle timeout.
type HelloObserver interface {
	Observer
	// HelloDone reports whether the client's ClientHello is complete (or
	// its bytes turned out not to be one, which ends inspection anyway).
	HelloDone() bool
}

type nopObserver struct{}

func (nopObserver) Dialed(net.Conn, error, time.Duration) {}
func (nopObserver) Data(Direction, []byte, time.Time)     {}
func (nopObserver) Inspecting(Direction) bool             { return false }
func (nopObserver) Ended(Direction, error, time.Time)     {}
func (nopObserver) Closed(Stats)                          {}

// The errors a direction ends with besides a FIN (io.EOF) or the socket's
// own error. The relay owns them; an Observer (the classifier in
// proxy/inspect) tells them apart with errors.Is.
var (
	// ErrIdle: the connection was idle for longer than the idle timeout.
	ErrIdle = errors.New("idle timeout")
	// ErrAborted: the relay was closed from outside (drain timeout).
	ErrAborted = errors.New("closed by ccproxy shutdown")
	// ErrWrite marks a failure to write to the destination: the other
	// peer's fault, not the one read from.
	ErrWrite = errors.New("write to peer failed")
	// ErrHelloTimeout: the client sent no complete ClientHello within the
	// ClientHello timeout. The error a direction ends with is a
	// *HelloTimeoutError, which says how long that was.
	ErrHelloTimeout = errors.New("no ClientHello in time")
)

// HelloTimeoutError ends the client direction of a connection whose
// client did not complete its ClientHello within Timeout.
type HelloTimeoutError struct {
	Timeout time.Duration
}

func (e *HelloTimeoutError) Error() string {
	return "no complete ClientHello within " + e.Timeout.String()
}

func (e *HelloTimeoutError) Unwrap() error { return ErrHelloTimeout }

type relay struct {
	client   net.Conn
	upstream net.Conn
	obs      Observer
	idle     time.Duration

	// hello, if set, tells when the client's ClientHello is complete; the
	// client has helloTimeout from the start of relaying to send it.
	hello        HelloObserver
	helloTimeout time.Duration

	inspect [2]atomic.Bool
	act     [2]activity
	bytes   [2]atomic.Int64

	abortOnce sync.Once
	aborted   atomic.Bool
	upMu      sync.Mutex // guards upstream while the dial is in progress

	// finSent[dir] is set just before dir forwards a FIN (CloseWrite on its
	// destination, the other direction's source), dstFailed[dir] just before
	// dir closes a destination it could not write to; see readEOFWasReset.
	finSent   [2]atomic.Bool
	dstFailed [2]atomic.Bool

	// The hand-off to the event loop (loop_linux.go): each direction joins
	// the loop once its inspection is over; hmu guards dstate and inLoop.
	hmu    sync.Mutex
	dstate [2]dirState
	inLoop *loopConn // set by the first direction to join
	loop   *evLoop
	left   atomic.Int32 // directions not yet ended; the last one's end closes
	done   func()       // the connection is over (Proxy's accounting)
}

// dirState is where a direction is, for the hand-off to the event loop.
type dirState uint8

const (
	dirInspecting dirState = iota // in inspectCopy
	dirForwarding                 // past inspection, forwarding on its goroutine
	dirInLoop                     // carried by the event loop
	dirEnded                      // its source ended
)

// abort closes both sides at once (drain timeout reached).
func (r *relay) abort() {
	r.abortOnce.Do(func() {
		r.aborted.Store(true)
		r.upMu.Lock()
		r.client.Close()
		if r.upstream != nil {
			r.upstream.Close()
		}
		r.upMu.Unlock()
		r.hmu.Lock()
		r.abortInLoop()
		r.hmu.Unlock()
	})
}

// run dials the upstream and copies both directions: the client's on the
// calling goroutine, the upstream's on one spawn gives it. It returns once the
// client's direction is over or has joined the event loop; done is called
// once the connection is over: both sides closed and the observer told.
// An idle connection past its inspection waits in the event loop with no
// goroutine; where there is none (not Linux) it keeps the calling
// goroutine, whose stack grew in the dial and shrinks at the next GC.
func (r *relay) run(ctx context.Context, dial func(context.Context) (net.Conn, error), log *slog.Logger, spawn func(func()), done func()) {
	start := time.Now()
	up, err := dial(ctx)
	took := time.Since(start)
	r.obs.Dialed(up, err, took)
	if err != nil {
		log.Debug("upstream dial failed", "client", r.client.RemoteAddr().String(), "err", err)
		// Without ccproxy the client's own connect would have failed; the
		// closest TCP allows is a reset, so the client sees "connection reset"
		// at once rather than a clean EOF that looks like a protocol problem.
		resetConn(r.client)
		r.obs.Closed(Stats{Closed: time.Now()})
		done()
		return
	}
	r.upMu.Lock()
	r.upstream = up
	r.upMu.Unlock()
	if r.aborted.Load() {
		up.Close()
	}

	now := time.Now().UnixNano()
	r.act[0].lastData.Store(now)
	r.act[1].lastData.Store(now)

	r.left.Store(2)
	r.done = done
	if loopAvailable() && !r.inspect[0].Load() && !r.inspect[1].Load() && r.join(ClientToUpstream) {
		// Nothing to inspect: straight to the event loop.
		if !r.join(UpstreamToClient) {
			spawn(r.copyUpstreamToClient)
		}
		return
	}
	// The client's direction runs on this goroutine (the accept's, whose
	// stack has already grown through the dial): one goroutine fewer to
	// start and schedule per connection.
	spawn(r.copyUpstreamToClient)
	r.copyClientToUpstream()
}

// endOne records that one direction ended; the second closes the
// connection: both net.Conns closed, the observer's Closed, done.
func (r *relay) endOne() {
	if r.left.Add(-1) == 0 {
		r.closeAll()
	}
}

// closeAll ends the connection once both directions ended.
func (r *relay) closeAll() {
	r.client.Close()
	r.upstream.Close()
	r.obs.Closed(Stats{
		ClientToUpstream: r.bytes[ClientToUpstream].Load(),
		UpstreamToClient: r.bytes[UpstreamToClient].Load(),
		Closed:           time.Now(),
	})
	r.done()
}

// Named per direction so goroutine dumps say what each goroutine is.
func (r *relay) copyClientToUpstream() {
	r.pipe(ClientToUpstream, r.client, r.upstream)
}

func (r *relay) copyUpstreamToClient() {
	r.pipe(UpstreamToClient, r.upstream, r.client)
}

// ends returns dir's source and destination.
func (r *relay) ends(dir Direction) (src, dst net.Conn) {
	if dir == ClientToUpstream {
		return r.client, r.upstream
	}
	return r.upstream, r.client
}

// pipe copies src to dst in direction dir until src ends, then forwards the
// end: CloseWrite for a FIN, a reset for anything else. Once dir is past
// its inspection it joins the event loop (where there is one) and pipe
// returns early.
func (r *relay) pipe(dir Direction, src, dst net.Conn) {
	inspected := r.inspect[dir].Load()
	err := r.inspectCopy(dir, src, dst)
	if err != nil {
		r.ended(dir, src, dst, err)
		return
	}
	if loopAvailable() && r.join(dir) {
		return
	}
	r.hmu.Lock()
	r.dstate[dir] = dirForwarding
	r.hmu.Unlock()
	if inspected {
		// Parsing the handshake grew this goroutine's stack to 8 KiB, and Go
		// shrinks a parked goroutine's stack only when under a quarter of it
		// is in use, which a splice wait's never is. The splice phase, which
		// may idle for hours, gets a fresh 2 KiB stack instead.
		go r.forward(dir, src, dst)
		return
	}
	r.forward(dir, src, dst)
}

// forward runs dir past its inspection on its goroutine until src ends.
func (r *relay) forward(dir Direction, src, dst net.Conn) {
	r.ended(dir, src, dst, r.spliceCopy(dir, src, dst))
}

// ended finishes dir on its goroutine. When the other direction is in the
// event loop, the loop learns it (it holds duplicates of both sockets, so
// a close here takes effect once the loop closes them too) and counts the
// end.
func (r *relay) ended(dir Direction, src, dst net.Conn, err error) {
	closed := !errors.Is(r.finish(dir, src, dst, err), io.EOF)
	r.hmu.Lock()
	r.dstate[dir] = dirEnded
	lc, l := r.inLoop, r.loop
	r.hmu.Unlock()
	if lc != nil {
		l.post(loopCmd{c: lc, dir: dir, op: opGoEnded, closed: closed})
		return
	}
	r.endOne()
}

// readErr, writeErr and closedErr are the errors the event loop ends a
// direction with, worded as the net package words them for a net.Conn.
func (r *relay) readErr(dir Direction, errno error) error {
	src, _ := r.ends(dir)
	return &net.OpError{Op: "read", Net: "tcp", Source: src.LocalAddr(), Addr: src.RemoteAddr(), Err: os.NewSyscallError("read", errno)}
}

func (r *relay) writeErr(dir Direction, errno error) error {
	_, dst := r.ends(dir)
	return wrapWrite(&net.OpError{Op: "write", Net: "tcp", Source: dst.LocalAddr(), Addr: dst.RemoteAddr(), Err: os.NewSyscallError("write", errno)})
}

func (r *relay) closedErr(dir Direction) error {
	if r.aborted.Load() {
		return ErrAborted
	}
	src, _ := r.ends(dir)
	return &net.OpError{Op: "read", Net: "tcp", Source: src.LocalAddr(), Addr: src.RemoteAddr(), Err: net.ErrClosed}
}

// finish forwards how dir ended: CloseWrite for a FIN, a reset for
// anything else.
func (r *relay) finish(dir Direction, src, dst net.Conn, err error) error {
	at := time.Now()
	if errors.Is(err, io.EOF) && r.readEOFWasReset(dir, src) {
		err = errPeerReset
	}
	if r.aborted.Load() {
		err = ErrAborted
	}
	r.act[dir].idle.Store(true) // an ended direction never holds the connection open
	r.obs.Ended(dir, err, at)
	switch {
	case errors.Is(err, io.EOF):
		// An orderly FIN: pass it on and let the other direction run on.
		r.finSent[dir].Store(true)
		if cw, ok := dst.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		} else {
			dst.Close()
		}
	case errors.Is(err, ErrHelloTimeout):
		// The client held a slot without a ClientHello: reset it, and
		// the upstream that never got one.
		resetConn(src)
		resetConn(dst)
	case errors.Is(err, ErrWrite):
		// dst is gone (reset or closed): reset src so its peer learns at once.
		r.dstFailed[dir].Store(true)
		resetConn(src)
		dst.Close()
	default:
		// A reset, an idle timeout or a forced close on src: reset dst too.
		resetConn(dst)
		src.Close()
	}
	return err
}

// errPeerReset replaces the EOF a read returned on a socket that was in
// fact reset (see readEOFWasReset).
var errPeerReset = fmt.Errorf("read: %w (the reset was reported to a write on the same socket; the read saw EOF)", syscall.ECONNRESET)

// readEOFWasReset tells whether the EOF that ended dir's reads from src
// was really a reset. The kernel reports a reset's error to one call only:
// when the other direction's write to src takes it, this direction's read
// returns EOF, and forwarding that as a FIN would make the peer take a cut
// stream for a complete one. The TCP state tells them apart: a FIN leaves
// src in CLOSE_WAIT, a reset in CLOSE. If the other direction already
// closed src after its write failed, the state is gone but its dstFailed
// flag, set before that close, says the same. Once the other direction has
// sent its own FIN on src, a FIN ends in CLOSE too, so then EOF stays EOF.
// The state and dstFailed are read before finSent: if finSent is still
// unset afterwards, no FIN of ours can have moved src to CLOSE.
func (r *relay) readEOFWasReset(dir Direction, src net.Conn) bool {
	if r.finSent[1-dir].Load() {
		return false // the common orderly close: no system call needed
	}
	reset := peerReset(src) || r.dstFailed[1-dir].Load()
	return reset && !r.finSent[1-dir].Load()
}

type writeError struct{ err error }

func (e *writeError) Error() string   { return "write to peer: " + e.err.Error() }
func (e *writeError) Unwrap() []error { return []error{ErrWrite, e.err} }
func wrapWrite(err error) error       { return &writeError{err: err} }
func (r *relay) markData(dir Direction) {
	r.act[dir].lastData.Store(time.Now().UnixNano())
	r.act[dir].idle.Store(false)
}
func (r *relay) count(dir Direction, n int) { r.bytes[dir].Add(int64(n)) }

// Buffer sizes for the inspection phase. An idle connection waiting for its
// ClientHello holds only the small buffer; a direction that fills it moves up
// to the large one. After inspection the kernel copies, with no user buffer.
const (
	smallBuf = 2 << 10
	largeBuf = 32 << 10
)

// The inspection buffers are pooled: every connection needs them for its
// handshake only, and a storm of new connections would otherwise make 36 KiB
// of garbage each.
var (
	smallBufs = sync.Pool{New: func() any { return new([smallBuf]byte) }}
	largeBufs = sync.Pool{New: func() any { return new([largeBuf]byte) }}
)

// inspectCopy forwards src to dst through a user-space buffer while the
// observer inspects dir. It returns nil when inspection ended and the
// direction should continue with splice, or the error that ended it (io.EOF
// for a FIN).
func (r *relay) inspectCopy(dir Direction, src, dst net.Conn) error {
	if !r.inspect[dir].Load() {
		return nil
	}
	small := smallBufs.Get().(*[smallBuf]byte)
	var large *[largeBuf]byte
	defer func() {
		smallBufs.Put(small)
		if large != nil {
			largeBufs.Put(large)
		}
	}()
	buf := small[:]
	// helloBy is when the client must have completed its ClientHello;
	// zero once it has, or when no deadline applies.
	var helloBy time.Time
	if dir == ClientToUpstream && r.hello != nil && r.helloTimeout > 0 {
		helloBy = time.Now().Add(r.helloTimeout)
	}
	for {
		if !r.obs.Inspecting(dir) {
			r.inspect[dir].Store(false)
			return nil
		}
		if !helloBy.IsZero() && r.hello.HelloDone() {
			helloBy = time.Time{}
			if r.idle <= 0 {
				src.SetReadDeadline(time.Time{})
			}
		}
		if helloBy.IsZero() {
			r.armDeadline(src)
		} else if r.idle > 0 && r.idle < time.Until(helloBy) {
			r.armDeadline(src)
		} else {
			src.SetReadDeadline(helloBy)
		}
		n, err := src.Read(buf)
		if n > 0 {
			at := time.Now()
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return wrapWrite(werr)
			}
			r.count(dir, n)
			r.markData(dir)
			r.obs.Data(dir, buf[:n], at)
			if n == len(buf) && large == nil {
				large = largeBufs.Get().(*[largeBuf]byte)
				buf = large[:]
			}
		}
		if err != nil {
			if isTimeout(err) && !helloBy.IsZero() && !time.Now().Before(helloBy) && !r.hello.HelloDone() {
				return &HelloTimeoutError{Timeout: r.helloTimeout}
			}
			if isTimeout(err) && n == 0 {
				if r.idleExpired(dir) {
					return ErrIdle
				}
				continue
			}
			if isTimeout(err) {
				continue
			}
			return err
		}
	}
}

// spliceChunk bounds one splice call so a long one-way stream still reports
// activity to the idle timer of the other, silent direction.
const spliceChunk = 4 << 20

// spliceCopy forwards src to dst after inspection. It waits for src
// holding no buffer and no pipe, so an idle direction costs only its
// goroutine. Once src is readable it reads what is queued into a pooled
// buffer and writes it on: for the small messages of a request-response
// protocol that is one read and one write per message, the fewest system
// calls and wake-ups there are. A read that fills the whole buffer means a
// stream is flowing: then the kernel moves whatever is queued with
// splice(2) (io.Copy between the TCP connections), until the queue is
// empty and the direction waits again.
func (r *relay) spliceCopy(dir Direction, src, dst net.Conn) error {
	rf, ok := dst.(io.ReaderFrom)
	if !ok {
		return r.bufferedCopy(dir, src, dst)
	}
	lr := &io.LimitedReader{R: src}
	for {
		r.armDeadline(src)
		buf, n, err := readReady(src)
		if n > 0 {
			_, werr := dst.Write(buf[:n])
			largeBufs.Put(buf)
			if werr != nil {
				return wrapWrite(werr)
			}
			r.count(dir, n)
			r.markData(dir)
		} else if buf != nil {
			largeBufs.Put(buf)
		}
		switch {
		case err != nil && isTimeout(err):
			if n == 0 && r.idleExpired(dir) {
				return ErrIdle
			}
			continue
		case err != nil:
			return err
		case n == 0:
			return io.EOF
		case n < largeBuf:
			continue
		}
		// A full buffer: splice what is queued, in chunks bounded so a
		// long one-way stream still reports activity to the idle timer of
		// the other, silent direction. Go's splice would park in its own
		// wait holding a pipe (two descriptors) if asked for more than is
		// queued, so it is asked for exactly that.
		for {
			queued := queuedNow(src)
			if queued == 0 {
				break // drained (or EOF, or an error): the next read says which
			}
			lr.N = int64(min(queued, spliceChunk))
			n, err := rf.ReadFrom(lr)
			if n > 0 {
				r.count(dir, int(n))
				r.markData(dir)
			}
			switch {
			case err == nil && lr.N > 0:
				return io.EOF // ReadFrom returns nil at EOF
			case err == nil:
				continue // chunk done
			case isTimeout(err):
				if n == 0 && r.idleExpired(dir) {
					return ErrIdle
				}
			case isReadErr(err, src):
				return err
			default:
				return wrapWrite(err)
			}
			break
		}
	}
}

// bufferedCopy is spliceCopy for connections that are not TCP (tests,
// tunnels).
func (r *relay) bufferedCopy(dir Direction, src, dst net.Conn) error {
	buf := make([]byte, largeBuf)
	for {
		r.armDeadline(src)
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return wrapWrite(werr)
			}
			r.count(dir, n)
			r.markData(dir)
		}
		if err != nil {
			if isTimeout(err) {
				if n == 0 && r.idleExpired(dir) {
					return ErrIdle
				}
				continue
			}
			return err
		}
	}
}

func (r *relay) armDeadline(src net.Conn) {
	if r.idle > 0 {
		src.SetReadDeadline(time.Now().Add(r.idle))
	}
}

// idleExpired is called when dir waited a whole idle period without a byte.
// The connection is idle only when the other direction agrees: either it also
// timed out with nothing, or it ended. So an idle connection closes between
// one and two idle periods after its last byte, and a connection that streams
// in one direction only is never mistaken for idle.
func (r *relay) idleExpired(dir Direction) bool {
	r.act[dir].idle.Store(true)
	other := &r.act[1-dir]
	quiet := time.Since(time.Unix(0, other.lastData.Load())) >= r.idle
	return other.idle.Load() && quiet
}

func isTimeout(err error) bool {
	return errors.Is(err, os.ErrDeadlineExceeded)
}

// isReadErr tells whether a failed splice broke on src (reset, or closed
// under us) rather than on dst. splice(2) reports both ends' errors alike, so
// ask src directly: a healthy socket has data or would block.
func isReadErr(_ error, src net.Conn) bool {
	return !socketAlive(src)
}

// resetConn closes c with SO_LINGER 0 so the peer gets an RST, not a FIN.
func resetConn(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	c.Close()
}
