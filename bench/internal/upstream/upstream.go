// Package upstream is the benchmark's upstream: a Go TLS 1.3 server that
// speaks package wire's protocol. It stands where the Coordinator stands,
// behind the relay under test.
//
//	cfg, _ := wire.ServerTLSConfig()
//	ln, _ := net.Listen("tcp", "127.0.0.1:0")
//	err := (&upstream.Server{TLS: cfg}).Serve(ctx, ln)
package upstream

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ccproxy-dev/ccproxy/bench/internal/wire"
)

// HandshakeTimeout bounds a TLS handshake so a stalled relay cannot hold a
// server goroutine forever.
const HandshakeTimeout = 30 * time.Second

// bufSize is the raw-phase copy buffer: large enough that a bulk transfer
// is not limited by the server's syscall count.
const bufSize = 256 << 10

// Server answers benchmark connections. Zero values other than TLS work.
type Server struct {
	TLS    *tls.Config
	Logger *slog.Logger
}

func (s *Server) logger() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// Serve accepts connections on ln until ctx ends, then closes ln and every
// open connection and waits for their goroutines.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	if s.TLS == nil {
		return errors.New("upstream: no TLS configuration")
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns = map[net.Conn]struct{}{}
	)
	stop := context.AfterFunc(ctx, func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for c := range conns {
			c.Close()
		}
	})
	defer stop()
	defer wg.Wait()
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			// EMFILE and friends: back off instead of spinning.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			s.logger().Warn("accept failed", "err", err, "retry_in", delay.String())
			time.Sleep(delay)
			continue
		}
		delay = 0
		mu.Lock()
		conns[c] = struct{}{}
		mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() {
				mu.Lock()
				delete(conns, c)
				mu.Unlock()
				c.Close()
			}()
			// A connection only ends with an error; EOF is the client's
			// orderly close.
			if err := s.handle(c); !errors.Is(err, io.EOF) {
				s.logger().Debug("connection ended", "client", c.RemoteAddr().String(), "err", err)
			}
		}()
	}
}

// stampConn records when the connection's first byte was read: the other
// end of the first-byte latency the client measures.
type stampConn struct {
	net.Conn
	first atomic.Int64 // unix nanos, 0 until the first byte
}

func (c *stampConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 && c.first.Load() == 0 {
		c.first.Store(time.Now().UnixNano())
	}
	return n, err
}

// handle runs one connection: the TLS phase, then raw-phase requests until
// the client closes. It always returns the error that ended it (io.EOF
// for an orderly close).
func (s *Server) handle(c net.Conn) error {
	sc := &stampConn{Conn: c}
	tc := tls.Server(sc, s.TLS)
	c.SetDeadline(time.Now().Add(HandshakeTimeout))
	if err := tc.Handshake(); err != nil {
		return fmt.Errorf("handshake: %w", err)
	}
	c.SetDeadline(time.Time{})
	for {
		m, err := wire.Read(tc)
		if err != nil {
			return err
		}
		if m.Op != wire.OpTLS && m.Op != wire.OpRaw {
			return fmt.Errorf("operation %q in the TLS phase", m.Op)
		}
		if err := wire.Write(tc, wire.Msg{Op: m.Op, Arg: sc.first.Load()}); err != nil {
			return err
		}
		if m.Op == wire.OpRaw {
			break
		}
	}
	// The client sends nothing after OpRaw until it has read the answer, so
	// the TLS layer has read no raw byte ahead: sc is exactly at the first
	// raw byte.
	return serveRaw(sc)
}

func serveRaw(c net.Conn) error {
	var buf []byte
	for {
		m, err := wire.Read(c)
		if err != nil {
			return err
		}
		if buf == nil && m.Op != wire.OpHold {
			buf = make([]byte, bufSize)
		}
		switch m.Op {
		case wire.OpUpload:
			n, err := io.CopyBuffer(discard{}, io.LimitReader(c, m.Arg), buf)
			if err != nil {
				return fmt.Errorf("upload: %w", err)
			}
			if n != m.Arg {
				return fmt.Errorf("upload: got %d of %d bytes", n, m.Arg)
			}
			if err := wire.Write(c, wire.Msg{Op: wire.OpUpload, Arg: n}); err != nil {
				return err
			}
		case wire.OpDownload:
			for left := m.Arg; left > 0; {
				n := min(left, int64(len(buf)))
				if _, err := c.Write(buf[:n]); err != nil {
					return fmt.Errorf("download: %w", err)
				}
				left -= n
			}
		case wire.OpEcho:
			for {
				n, err := c.Read(buf)
				if n > 0 {
					if _, werr := c.Write(buf[:n]); werr != nil {
						return werr
					}
				}
				if err != nil {
					return err
				}
			}
		case wire.OpHold:
			if _, err := c.Write([]byte{'h'}); err != nil {
				return err
			}
			var b [1]byte
			for {
				if _, err := c.Read(b[:]); err != nil {
					return err
				}
			}
		default:
			return fmt.Errorf("operation %q in the raw phase", m.Op)
		}
	}
}

// discard is io.Discard without ReadFrom, so io.CopyBuffer reads with our
// large buffer instead of io.Discard's small pooled one.
type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
