package tunnel

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/quic-go/quic-go"
)

// streamConn is a relay stream seen as a TCP-like net.Conn, so package
// proxy relays it as it relays an accepted socket:
//
//   - CloseWrite sends the stream's FIN (a TCP half-close).
//   - Close after CloseWrite only stops reading what is left.
//   - Close before CloseWrite resets the stream both ways with codeReset:
//     the relay closes a connection without CloseWrite only to abort it
//     (a reset or idle timeout on the other side), which TCP would turn
//     into an RST.
//   - A peer's codeReset reads as ECONNRESET, as a TCP reset would.
type streamConn struct {
	st     *quic.Stream
	local  net.Addr
	remote net.Addr

	mu          sync.Mutex
	writeClosed bool // FIN sent
	reset       bool // cancelled both ways
}

func newStreamConn(st *quic.Stream, local, remote net.Addr) *streamConn {
	return &streamConn{st: st, local: local, remote: remote}
}

func (c *streamConn) Read(p []byte) (int, error) {
	n, err := c.st.Read(p)
	return n, streamErr(err)
}

func (c *streamConn) Write(p []byte) (int, error) {
	n, err := c.st.Write(p)
	return n, streamErr(err)
}

// CloseWrite half-closes: the peer reads EOF after the data written so far.
// The relay calls it from the goroutine that writes, never concurrently
// with Write, as quic-go requires.
func (c *streamConn) CloseWrite() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.writeClosed || c.reset {
		return nil
	}
	c.writeClosed = true
	return c.st.Close()
}

// Close ends the stream; see the type's comment for when that is a reset.
func (c *streamConn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.reset {
		return nil
	}
	if !c.writeClosed {
		c.reset = true
		c.st.CancelWrite(codeReset)
	}
	// A no-op when everything was read; otherwise tells the peer to stop.
	c.st.CancelRead(codeReset)
	return nil
}

func (c *streamConn) LocalAddr() net.Addr                { return c.local }
func (c *streamConn) RemoteAddr() net.Addr               { return c.remote }
func (c *streamConn) SetDeadline(t time.Time) error      { return c.st.SetDeadline(t) }
func (c *streamConn) SetReadDeadline(t time.Time) error  { return c.st.SetReadDeadline(t) }
func (c *streamConn) SetWriteDeadline(t time.Time) error { return c.st.SetWriteDeadline(t) }

// peerResetError is a peer's codeReset: the far end's TCP connection was
// reset. It unwraps to ECONNRESET so the classifier treats it like a
// reset socket, and to the stream error for the details.
type peerResetError struct{ err error }

func (e *peerResetError) Error() string {
	return fmt.Sprintf("connection reset by peer (through the tunnel: %v)", e.err)
}
func (e *peerResetError) Unwrap() []error { return []error{syscall.ECONNRESET, e.err} }

func streamErr(err error) error {
	if err == nil {
		return nil
	}
	var se *quic.StreamError
	if errors.As(err, &se) && se.Remote && se.ErrorCode == codeReset {
		return &peerResetError{err: err}
	}
	return err
}
