package tunnel

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"

	"github.com/quic-go/quic-go"
)

// pumpBuf is the copy buffer per direction: QUIC packs stream data into
// ~1.4 KiB packets whatever the write size, so a larger buffer only saves
// calls.
const pumpBuf = 64 << 10

// pump copies one local TCP connection to and from its stream with the
// relay's semantics: a FIN is passed on as a FIN (the other direction runs
// on), a reset as a reset.
type pump struct {
	tcp net.Conn
	st  *quic.Stream

	sent, recv atomic.Int64

	mu   sync.Mutex
	code quic.StreamErrorCode // the server's reset code, 0 if none
}

// run writes header, then copies both ways until both have ended, and
// closes the TCP connection.
func (p *pump) run(header []byte) {
	var wg sync.WaitGroup
	wg.Add(2)
	done := make(chan struct{})
	go func() { defer wg.Done(); p.localToTunnel(header) }()
	go func() { defer wg.Done(); p.tunnelToLocal() }()
	go p.watchStop(done)
	wg.Wait()
	close(done)
	p.tcp.Close()
}

// watchStop resets the local connection when the server stops reading
// (STOP_SENDING) or the tunnel connection closes while the local client
// may still be sending: otherwise a client that keeps its side open would
// wait in a read that nothing ends, after the relay is long gone.
func (p *pump) watchStop(done <-chan struct{}) {
	ctx := p.st.Context()
	select {
	case <-done:
		return
	case <-ctx.Done():
	}
	cause := context.Cause(ctx)
	var se *quic.StreamError
	switch {
	case errors.Is(cause, quic.ErrStreamClosed):
		return // our own FIN
	case errors.As(cause, &se) && !se.Remote:
		return // our own reset; whoever called it handles the TCP side
	}
	p.note(cause)
	resetConn(p.tcp)
}

// abort resets both sides (drain timeout).
func (p *pump) abort() {
	p.st.CancelWrite(codeReset)
	p.st.CancelRead(codeReset)
	resetConn(p.tcp)
}

func (p *pump) remoteCode() quic.StreamErrorCode {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.code
}

// note remembers the first reset code the server sent.
func (p *pump) note(err error) {
	var se *quic.StreamError
	if errors.As(err, &se) && se.Remote {
		p.mu.Lock()
		if p.code == 0 {
			p.code = se.ErrorCode
		}
		p.mu.Unlock()
	}
}

// Named per direction so goroutine dumps say which one is stuck.
func (p *pump) localToTunnel(header []byte) {
	if _, err := p.st.Write(header); err != nil {
		p.note(err)
		resetConn(p.tcp)
		return
	}
	buf := make([]byte, pumpBuf)
	for {
		n, rerr := p.tcp.Read(buf)
		if n > 0 {
			if _, werr := p.st.Write(buf[:n]); werr != nil {
				// The server stopped reading (refused or reset the
				// stream) or the tunnel is gone: the client learns at once.
				p.note(werr)
				resetConn(p.tcp)
				return
			}
			p.sent.Add(int64(n))
		}
		if rerr != nil {
			if errors.Is(rerr, io.EOF) {
				p.st.Close() // FIN: the relay half-closes the upstream
				return
			}
			// The local client reset (or the socket was closed under us
			// after the other direction failed): reset the stream.
			p.st.CancelWrite(codeReset)
			p.st.CancelRead(codeReset)
			return
		}
	}
}

func (p *pump) tunnelToLocal() {
	buf := make([]byte, pumpBuf)
	for {
		n, rerr := p.st.Read(buf)
		if n > 0 {
			if _, werr := p.tcp.Write(buf[:n]); werr != nil {
				// The local client is gone: tell the relay.
				p.st.CancelRead(codeReset)
				p.st.CancelWrite(codeReset)
				resetConn(p.tcp)
				return
			}
			p.recv.Add(int64(n))
		}
		if rerr != nil {
			if errors.Is(rerr, io.EOF) {
				if cw, ok := p.tcp.(interface{ CloseWrite() error }); ok {
					cw.CloseWrite()
				}
				return
			}
			// A reset from the relay, a refusal, or a lost tunnel: the
			// local client sees a reset, as it would from the upstream.
			p.note(rerr)
			resetConn(p.tcp)
			return
		}
	}
}

// resetConn closes c with SO_LINGER 0 so the peer gets an RST, not a FIN.
func resetConn(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	c.Close()
}
