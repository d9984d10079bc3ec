package probe

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ccproxy-dev/ccproxy/proxy"
	"github.com/ccproxy-dev/ccproxy/proxy/inspect"
)

// wire watches the bytes of one probe connection with the relay's TLS
// parsers and classifier, so a failure on the wire is named by the same code
// that names it for a relayed connection. The probe is the client: what it
// writes is the client-to-server direction.
type wire struct {
	mu  sync.Mutex // guards cls; the parsers' sink takes it
	cls inspect.Classifier

	// Each parser is written by one direction; the mutexes keep that true
	// even if a caller reads or writes the connection from two goroutines.
	c2sMu, s2cMu sync.Mutex
	c2s, s2c     *inspect.Parser
}

func newWire(issuerDeadline time.Duration) *wire {
	w := &wire{}
	w.cls.IssuerDeadline = issuerDeadline
	w.c2s, w.s2c = inspect.NewConn(w.observe)
	return w
}

func (w *wire) observe(ev inspect.Event) {
	now := time.Now()
	w.mu.Lock()
	w.cls.Observe(ev, now)
	w.mu.Unlock()
}

// data records bytes that passed in dir. The classifier learns of them
// before the parser reports their events, as the relay does it.
func (w *wire) data(dir inspect.Direction, p []byte) {
	now := time.Now()
	w.mu.Lock()
	w.cls.Data(dir, len(p), now)
	w.mu.Unlock()
	if dir == inspect.ClientToServer {
		w.c2sMu.Lock()
		w.c2s.Write(p)
		w.c2sMu.Unlock()
		return
	}
	w.s2cMu.Lock()
	w.s2c.Write(p)
	w.s2cMu.Unlock()
}

func (w *wire) ended(dir inspect.Direction, err error) {
	now := time.Now()
	w.mu.Lock()
	w.cls.Ended(dir, err, now)
	w.mu.Unlock()
}

// dialed records the dial's outcome; a dial error becomes the verdict
// (upstream_dns_failure, upstream_refused, upstream_dial_timeout,
// upstream_unreachable).
func (w *wire) dialed(err error) {
	w.mu.Lock()
	w.cls.Dialed(err)
	w.mu.Unlock()
}

// unanswered tells the classifier that the upstream ended the connection
// (end) while the probe still waited for the answer to request: only the
// probe, the client, knows that, and the classifier names it.
func (w *wire) unanswered(request string, end error) {
	w.mu.Lock()
	w.cls.Unanswered(request, end)
	w.mu.Unlock()
}

// verdict is the classifier's wire verdict. Call it after the connection
// was closed, so both directions' ends are known.
func (w *wire) verdict() inspect.Verdict {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.cls.Verdict()
}

func (w *wire) facts() inspect.Facts {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.cls.Facts()
}

// tappedConn is the probe's TCP connection with every byte teed into a
// wire. The bytes themselves pass unchanged.
type tappedConn struct {
	net.Conn
	w *wire
	// closed is set before the probe closes the connection itself: the read
	// that this interrupts is the probe giving up, not the upstream ending.
	closed atomic.Bool
	// peerEnd is how the upstream's side ended (io.EOF for a FIN) when it
	// ended before the probe closed the connection.
	peerEnd atomic.Pointer[error]
}

// peerEnded returns how the upstream ended the connection before the probe
// closed it, nil if it did not.
func (c *tappedConn) peerEnded() error {
	if p := c.peerEnd.Load(); p != nil {
		return *p
	}
	return nil
}

func (c *tappedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.w.data(inspect.ServerToClient, p[:n])
	}
	if err != nil && !c.ownEnd(err) {
		c.peerEnd.CompareAndSwap(nil, &err)
		c.w.ended(inspect.ServerToClient, err)
	}
	return n, err
}

func (c *tappedConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if n > 0 {
		c.w.data(inspect.ClientToServer, p[:n])
	}
	if err != nil && !c.ownEnd(err) {
		// A write fails when the upstream reset the connection; nothing may
		// be reading to see that, so record the upstream's end first.
		if errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) {
			c.peerEnd.CompareAndSwap(nil, &err)
			c.w.ended(inspect.ServerToClient, err)
		}
		// The relay names a failed write to the upstream this way.
		c.w.ended(inspect.ClientToServer, fmt.Errorf("%w: %w", proxy.ErrWrite, err))
	}
	return n, err
}

// Close records that the probe (the client) ended the connection with a
// FIN, then closes it.
func (c *tappedConn) Close() error {
	if !c.closed.Swap(true) {
		c.w.ended(inspect.ClientToServer, io.EOF)
	}
	return c.Conn.Close()
}

// ownEnd reports errors caused by the probe itself: its own close or a
// deadline it set.
func (c *tappedConn) ownEnd(err error) bool {
	return c.closed.Load() || errors.Is(err, net.ErrClosed) || errors.Is(err, os.ErrDeadlineExceeded)
}
