// Package soak loads a TCP relay with many concurrent connections that
// carry random traffic with half-closes in every order, and verifies every
// byte end to end: each direction ends with the SHA-256 of what its sender
// wrote, which the receiver checks against what it read, followed by exactly
// one FIN. A relay that drops, duplicates, reorders, truncates or pads a
// stream, or turns a FIN into a reset (or a reset into a FIN), is caught and
// counted as a loss.
//
// It is the load generator and the checking upstream of ccproxy's soak test
// (make soak) and of the fault tests that need traffic whose loss would show:
//
//	up := &soak.Upstream{}
//	go up.Serve(upstreamListener) // the relay forwards to upstreamListener.Addr()
//	rep := (&soak.Load{Addrs: []string{relayAddr}, Workers: 1000, Duration: time.Minute}).Run(ctx)
//	upstreamListener.Close()
//	up.Wait()
//	fmt.Println(rep, up.Report())
//
// # Wire protocol
//
// The client optionally sends one TLS record first (a real ClientHello, so
// an inspecting relay parses the start of a handshake), then a 32-byte
// header: "CCPS", the Mode, three zero bytes, the seed, the client→upstream
// and the upstream→client payload lengths (uint64 big endian each). Each
// direction then carries its payload (a ChaCha8 stream keyed by the seed and
// the direction, written in chunks of random size with random pauses), the
// 32-byte SHA-256 of that payload, and a FIN. The Mode says which direction
// goes first, so half-closed connections are exercised both ways round.
package soak

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Mode orders the two directions of one connection.
type Mode uint8

const (
	// Concurrent: both directions stream at once; either FIN may come first.
	Concurrent Mode = iota
	// RequestResponse: the client sends everything and half-closes, then the
	// upstream answers and half-closes (a client that sends, CloseWrites and
	// waits for the answer).
	RequestResponse
	// ServerFirst: the upstream sends everything and half-closes before it
	// reads; the client sends only after the upstream's FIN.
	ServerFirst
	numModes
)

func (m Mode) String() string {
	switch m {
	case Concurrent:
		return "concurrent"
	case RequestResponse:
		return "request_response"
	case ServerFirst:
		return "server_first"
	}
	return fmt.Sprintf("mode(%d)", uint8(m))
}

// Protocol constants.
const (
	HeaderLen  = 32
	TrailerLen = sha256.Size
	// MaxPayload bounds a header's lengths: the upstream refuses more, so a
	// corrupted header cannot make it stream for hours.
	MaxPayload = 1 << 32
	magic      = "CCPS"
)

// Defaults of the zero Load and Upstream.
const (
	DefaultMaxBytes = 4 << 20
	DefaultTimeout  = 2 * time.Minute
)

// Spec is one connection's traffic.
type Spec struct {
	Mode Mode
	Seed uint64 // keys both payloads, the chunk sizes and the pauses
	Up   int64  // payload bytes client → upstream
	Down int64  // payload bytes upstream → client
	// Slow makes both senders pause now and then (1-20 ms), so connections
	// stay open, idle in between, and chunks arrive in separate segments.
	Slow bool
	// Hello, if set, is one TLS record sent before the header.
	Hello []byte
}

// WireUp is the number of bytes the client sends for s: what a relay
// should count as forwarded client → upstream.
func (s Spec) WireUp() int64 { return int64(len(s.Hello)) + HeaderLen + s.Up + TrailerLen }

// WireDown is the number of bytes the upstream sends for s.
func (s Spec) WireDown() int64 { return s.Down + TrailerLen }

// AppendHeader appends s's header to b.
func (s Spec) AppendHeader(b []byte) []byte {
	b = append(b, magic...)
	b = append(b, byte(s.Mode), 0, 0, 0)
	b = binary.BigEndian.AppendUint64(b, s.Seed)
	b = binary.BigEndian.AppendUint64(b, uint64(s.Up))
	return binary.BigEndian.AppendUint64(b, uint64(s.Down))
}

// ParseHeader decodes a header written by AppendHeader. Hello is not part
// of the header and stays nil.
func ParseHeader(h []byte) (Spec, error) {
	if len(h) != HeaderLen {
		return Spec{}, fmt.Errorf("header is %d bytes, want %d", len(h), HeaderLen)
	}
	if string(h[:4]) != magic {
		return Spec{}, fmt.Errorf("header starts %q, want %q", h[:4], magic)
	}
	if h[5]|h[6]|h[7] != 0 {
		return Spec{}, fmt.Errorf("header reserved bytes are % x, want zero", h[5:8])
	}
	s := Spec{Mode: Mode(h[4]), Seed: binary.BigEndian.Uint64(h[8:])}
	if s.Mode >= numModes {
		return Spec{}, fmt.Errorf("header mode %d is not one of 0-%d", h[4], numModes-1)
	}
	up, down := binary.BigEndian.Uint64(h[16:]), binary.BigEndian.Uint64(h[24:])
	if up > MaxPayload || down > MaxPayload {
		return Spec{}, fmt.Errorf("header lengths %d and %d exceed the %d-byte limit", up, down, uint64(MaxPayload))
	}
	s.Up, s.Down = int64(up), int64(down)
	return s, nil
}

// Loss is one connection that did not carry its bytes intact.
type Loss struct {
	Side string // "client" or "upstream"
	Kind string // dial, header, write, truncated, checksum, trailing, no_fin, timeout
	Err  error
}

func (l *Loss) Error() string { return l.Side + " " + l.Kind + ": " + l.Err.Error() }

func lossf(side, kind, format string, a ...any) *Loss {
	return &Loss{Side: side, Kind: kind, Err: fmt.Errorf(format, a...)}
}

// direction tags for the stream keys.
const (
	dirUp   = 1
	dirDown = 2
)

const (
	maxChunk = 32 << 10
	readBuf  = 16 << 10
)

// bufPool holds chunk buffers; a connection holds one only while a read or
// write is in progress, so thousands of paused connections cost no memory.
var bufPool = sync.Pool{New: func() any { b := make([]byte, maxChunk); return &b }}

// send writes n payload bytes of s's stream for dir, the trailer and a FIN.
func send(c net.Conn, s Spec, dir uint64, n int64, side string) error {
	var key [32]byte
	binary.BigEndian.PutUint64(key[:], s.Seed)
	binary.BigEndian.PutUint64(key[8:], dir)
	gen := rand.NewChaCha8(key)
	pace := rand.New(rand.NewPCG(s.Seed, dir<<8|0x5a))
	h := sha256.New()
	var sent int64
	for sent < n {
		k := chunkSize(pace, n-sent)
		bp := bufPool.Get().(*[]byte)
		b := (*bp)[:k]
		gen.Read(b)
		h.Write(b)
		_, err := c.Write(b)
		bufPool.Put(bp)
		if err != nil {
			return lossf(side, kindOf(err, "write"), "write at byte %d of %d: %w", sent, n, err)
		}
		sent += int64(k)
		if s.Slow && pace.IntN(16) == 0 {
			time.Sleep(time.Duration(1+pace.IntN(20)) * time.Millisecond)
		}
	}
	if _, err := c.Write(h.Sum(nil)); err != nil {
		return lossf(side, kindOf(err, "write"), "write trailer after %d bytes: %w", n, err)
	}
	if err := closeWrite(c); err != nil {
		return lossf(side, kindOf(err, "write"), "half-close after %d bytes: %w", n, err)
	}
	return nil
}

// chunkSize draws the next write size: mostly a few KiB, sometimes one
// byte, sometimes a full buffer.
func chunkSize(r *rand.Rand, left int64) int {
	var k int
	switch x := r.IntN(16); {
	case x == 0:
		k = 1
	case x < 4:
		k = 1 + r.IntN(512)
	case x < 14:
		k = 1 + r.IntN(8<<10)
	default:
		k = maxChunk
	}
	return int(min(int64(k), left))
}

// receive reads n payload bytes and the trailer, checks the SHA-256, and
// then requires exactly a FIN.
func receive(c net.Conn, n int64, side string) error {
	h := sha256.New()
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := (*bp)[:readBuf]
	var got int64
	for got < n {
		m, err := c.Read(buf[:min(int64(len(buf)), n-got)])
		h.Write(buf[:m])
		got += int64(m)
		if err != nil && got < n {
			if errors.Is(err, io.EOF) {
				return lossf(side, "truncated", "stream ended after %d of %d payload bytes", got, n)
			}
			return lossf(side, kindOf(err, "truncated"), "read failed after %d of %d payload bytes: %w", got, n, err)
		}
	}
	var trailer [TrailerLen]byte
	if _, err := io.ReadFull(c, trailer[:]); err != nil {
		return lossf(side, kindOf(err, "truncated"), "trailer after %d payload bytes: %w", n, err)
	}
	if sum := h.Sum(nil); !bytes.Equal(sum, trailer[:]) {
		return lossf(side, "checksum", "SHA-256 of %d payload bytes is %x, the sender's is %x", n, sum, trailer)
	}
	m, err := c.Read(buf[:1])
	switch {
	case m > 0:
		return lossf(side, "trailing", "bytes after the trailer (%d payload bytes)", n)
	case errors.Is(err, io.EOF):
		return nil
	case err == nil:
		return lossf(side, "no_fin", "zero-byte read without EOF after the trailer")
	}
	return lossf(side, kindOf(err, "no_fin"), "no FIN after the trailer: %w", err)
}

func kindOf(err error, def string) string {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return "timeout"
	}
	return def
}

func closeWrite(c net.Conn) error {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return fmt.Errorf("%T cannot half-close", c)
}

// Exchange runs the client side of s over c: it sends the hello, the header
// and its payload, receives the upstream's, and checks every byte. It does
// not close c. The error is a *Loss.
func Exchange(c net.Conn, s Spec) error {
	pre := make([]byte, 0, len(s.Hello)+HeaderLen)
	pre = s.AppendHeader(append(pre, s.Hello...))
	if _, err := c.Write(pre); err != nil {
		return lossf("client", kindOf(err, "write"), "write header: %w", err)
	}
	switch s.Mode {
	case RequestResponse:
		if err := send(c, s, dirUp, s.Up, "client"); err != nil {
			return err
		}
		return receive(c, s.Down, "client")
	case ServerFirst:
		if err := receive(c, s.Down, "client"); err != nil {
			return err
		}
		return send(c, s, dirUp, s.Up, "client")
	}
	errc := make(chan error, 1)
	go func() { errc <- send(c, s, dirUp, s.Up, "client") }()
	rerr := receive(c, s.Down, "client")
	if rerr != nil {
		// Unblock a sender stuck on a peer that stopped reading.
		c.SetWriteDeadline(time.Now())
	}
	return errors.Join(rerr, <-errc)
}

// Upstream serves the upstream side of the protocol and counts what it
// verified. The zero value is ready; call Serve, then Wait after closing the
// listener.
type Upstream struct {
	// Timeout bounds each connection; 0 means DefaultTimeout.
	Timeout time.Duration

	wg     sync.WaitGroup
	conns  atomic.Int64
	bytes  [2]atomic.Int64 // payload verified up, sent down
	losses lossCounter
}

// Serve accepts on ln until it is closed.
func (u *Upstream) Serve(ln net.Listener) error {
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			// EMFILE and friends: the load shows as dial losses on the
			// client side; back off instead of spinning.
			time.Sleep(10 * time.Millisecond)
			continue
		}
		u.wg.Add(1)
		go u.handle(c)
	}
}

// Wait blocks until every accepted connection has been handled.
func (u *Upstream) Wait() { u.wg.Wait() }

func (u *Upstream) handle(c net.Conn) {
	defer u.wg.Done()
	defer c.Close()
	timeout := u.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	c.SetDeadline(time.Now().Add(timeout))
	s, err := readHeader(c)
	if err != nil {
		u.losses.add(err)
		return
	}
	var uerr error
	switch s.Mode {
	case RequestResponse:
		if uerr = receive(c, s.Up, "upstream"); uerr == nil {
			uerr = send(c, s, dirDown, s.Down, "upstream")
		}
	case ServerFirst:
		if uerr = send(c, s, dirDown, s.Down, "upstream"); uerr == nil {
			uerr = receive(c, s.Up, "upstream")
		}
	default:
		errc := make(chan error, 1)
		go func() { errc <- send(c, s, dirDown, s.Down, "upstream") }()
		rerr := receive(c, s.Up, "upstream")
		if rerr != nil {
			c.SetWriteDeadline(time.Now())
		}
		uerr = errors.Join(rerr, <-errc)
	}
	if uerr != nil {
		u.losses.add(uerr)
		return
	}
	u.conns.Add(1)
	u.bytes[0].Add(s.Up)
	u.bytes[1].Add(s.Down)
}

// readHeader skips one leading TLS record, if any, and parses the header.
func readHeader(c net.Conn) (Spec, error) {
	var first [5]byte
	if _, err := io.ReadFull(c, first[:1]); err != nil {
		return Spec{}, lossf("upstream", kindOf(err, "header"), "no header: %w", err)
	}
	h := make([]byte, HeaderLen)
	if first[0] == 22 { // a TLS handshake record: skip it
		if _, err := io.ReadFull(c, first[1:]); err != nil {
			return Spec{}, lossf("upstream", kindOf(err, "header"), "TLS record header: %w", err)
		}
		n := int64(binary.BigEndian.Uint16(first[3:]))
		if _, err := io.CopyN(io.Discard, c, n); err != nil {
			return Spec{}, lossf("upstream", kindOf(err, "header"), "TLS record of %d bytes: %w", n, err)
		}
		if _, err := io.ReadFull(c, h); err != nil {
			return Spec{}, lossf("upstream", kindOf(err, "header"), "header: %w", err)
		}
	} else {
		h[0] = first[0]
		if _, err := io.ReadFull(c, h[1:]); err != nil {
			return Spec{}, lossf("upstream", kindOf(err, "header"), "header: %w", err)
		}
	}
	s, err := ParseHeader(h)
	if err != nil {
		return Spec{}, &Loss{Side: "upstream", Kind: "header", Err: err}
	}
	return s, nil
}

// SideReport is what one side verified.
type SideReport struct {
	Connections int64            // connections whose bytes all arrived intact
	BytesIn     int64            // payload bytes received and verified
	BytesOut    int64            // payload bytes sent (and verified by the peer, if it reports no loss)
	Losses      map[string]int64 // by kind
	Samples     []string         // the first few losses, for the log
}

// Lost is the number of connections with a loss.
func (r SideReport) Lost() int64 {
	var n int64
	for _, v := range r.Losses {
		n += v
	}
	return n
}

// Report returns what the upstream verified so far.
func (u *Upstream) Report() SideReport {
	r := SideReport{Connections: u.conns.Load(), BytesIn: u.bytes[0].Load(), BytesOut: u.bytes[1].Load()}
	r.Losses, r.Samples = u.losses.snapshot()
	return r
}

type lossCounter struct {
	mu      sync.Mutex
	kinds   map[string]int64
	samples []string
}

const maxSamples = 10

func (l *lossCounter) add(err error) {
	kind := "other"
	var loss *Loss
	if errors.As(err, &loss) {
		kind = loss.Kind
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.kinds == nil {
		l.kinds = map[string]int64{}
	}
	l.kinds[kind]++
	if len(l.samples) < maxSamples {
		l.samples = append(l.samples, err.Error())
	}
}

func (l *lossCounter) snapshot() (map[string]int64, []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	m := make(map[string]int64, len(l.kinds))
	for k, v := range l.kinds {
		m[k] = v
	}
	return m, append([]string(nil), l.samples...)
}

// Load runs Workers concurrent clients against Addrs, each starting one
// connection after another with a random Spec until Duration has passed.
type Load struct {
	Addrs    []string      // relay addresses; workers are spread over them
	Workers  int           // concurrent connections
	Duration time.Duration // how long workers start new connections
	Ramp     time.Duration // worker i starts at i*Ramp/Workers, so the listen backlog is not flooded
	MaxBytes int64         // largest payload per direction; 0 means DefaultMaxBytes
	Seed     uint64        // makes a run reproducible (chunking and timing aside)
	// Hello, if set, is sent first on every other connection.
	Hello   []byte
	Timeout time.Duration // per connection; 0 means DefaultTimeout
	// Spec, if set, replaces the random choice of each connection's traffic.
	Spec func(r *rand.Rand) Spec
}

// Report is what a Load did and verified.
type Report struct {
	SideReport
	Duration       time.Duration
	WireUp         int64 // bytes the clients sent, hello, header and trailer included
	WireDown       int64 // bytes the clients received and verified, trailer included
	PeakConcurrent int64 // most connections open at once
}

func (r Report) String() string {
	return fmt.Sprintf("%d connections in %s (peak %d concurrent), %s client→upstream and %s upstream→client verified, %d lost %s",
		r.Connections, r.Duration.Round(time.Millisecond), r.PeakConcurrent, IBytes(r.BytesOut), IBytes(r.BytesIn), r.Lost(), FormatLosses(r.Losses))
}

// Run drives the load until Duration has passed (or ctx ends) and every
// connection in flight has finished.
func (l *Load) Run(ctx context.Context) Report {
	if len(l.Addrs) == 0 {
		return Report{SideReport: SideReport{Losses: map[string]int64{"dial": 1}, Samples: []string{"soak: Load has no Addrs"}}}
	}
	workers := max(l.Workers, 1)
	timeout := l.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	maxBytes := l.MaxBytes
	if maxBytes <= 0 {
		maxBytes = DefaultMaxBytes
	}
	pick := l.Spec
	if pick == nil {
		pick = func(r *rand.Rand) Spec { return randomSpec(r, maxBytes) }
	}
	var (
		losses                     lossCounter
		conns, in, out, wUp, wDown atomic.Int64
		open, peak                 atomic.Int64
		wg                         sync.WaitGroup
		start                      = time.Now()
		deadline                   = start.Add(l.Duration)
		dialer                     = &net.Dialer{Timeout: 10 * time.Second}
	)
	for i := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(l.Seed, uint64(i)))
			if l.Ramp > 0 {
				select {
				case <-time.After(time.Duration(int64(l.Ramp) * int64(i) / int64(workers))):
				case <-ctx.Done():
					return
				}
			}
			for n := 0; time.Now().Before(deadline) && ctx.Err() == nil; n++ {
				s := pick(r)
				if l.Hello != nil && n%2 == i%2 {
					s.Hello = l.Hello
				}
				addr := l.Addrs[(i+n)%len(l.Addrs)]
				c, err := dialer.DialContext(ctx, "tcp", addr)
				if err != nil {
					if ctx.Err() == nil {
						losses.add(lossf("client", "dial", "dial %s: %w", addr, err))
					}
					continue
				}
				if o := open.Add(1); o > peak.Load() {
					peakMax(&peak, o)
				}
				c.SetDeadline(time.Now().Add(timeout))
				err = Exchange(c, s)
				c.Close()
				open.Add(-1)
				if err != nil {
					losses.add(err)
					continue
				}
				conns.Add(1)
				out.Add(s.Up)
				in.Add(s.Down)
				wUp.Add(s.WireUp())
				wDown.Add(s.WireDown())
			}
		}()
	}
	wg.Wait()
	rep := Report{
		SideReport:     SideReport{Connections: conns.Load(), BytesIn: in.Load(), BytesOut: out.Load()},
		Duration:       time.Since(start),
		WireUp:         wUp.Load(),
		WireDown:       wDown.Load(),
		PeakConcurrent: peak.Load(),
	}
	rep.Losses, rep.Samples = losses.snapshot()
	return rep
}

func peakMax(p *atomic.Int64, v int64) {
	for {
		cur := p.Load()
		if v <= cur || p.CompareAndSwap(cur, v) {
			return
		}
	}
}

// randomSpec draws a connection: sizes mostly small, some large, each
// direction independent (zero included); every mode; a quarter slow.
func randomSpec(r *rand.Rand, maxBytes int64) Spec {
	size := func() int64 {
		switch x := r.IntN(20); {
		case x == 0:
			return 0
		case x < 10:
			return r.Int64N(min(4<<10, maxBytes) + 1)
		case x < 18:
			return r.Int64N(min(256<<10, maxBytes) + 1)
		}
		return r.Int64N(maxBytes + 1)
	}
	return Spec{Mode: Mode(r.IntN(int(numModes))), Seed: r.Uint64(), Up: size(), Down: size(), Slow: r.IntN(4) == 0}
}

// ClientHello returns one TLS record holding a ClientHello as the Contrast
// CLI sends it: TLS 1.3, SNI "localhost", ALPN atls:v1:nonce:<hex> then h2.
func ClientHello() ([]byte, error) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	nonce := make([]byte, 32)
	for i := range nonce {
		nonce[i] = byte(i)
	}
	cfg := &tls.Config{
		InsecureSkipVerify: true,
		ServerName:         "localhost",
		MinVersion:         tls.VersionTLS12,
		NextProtos:         []string{fmt.Sprintf("atls:v1:nonce:%x", nonce), "h2"},
	}
	go tls.Client(a, cfg).Handshake() // ends when the pipe closes
	hdr := make([]byte, 5)
	if _, err := io.ReadFull(b, hdr); err != nil {
		return nil, fmt.Errorf("reading ClientHello record header: %w", err)
	}
	body := make([]byte, binary.BigEndian.Uint16(hdr[3:]))
	if _, err := io.ReadFull(b, body); err != nil {
		return nil, fmt.Errorf("reading ClientHello record: %w", err)
	}
	return append(hdr, body...), nil
}

// RaiseFileLimit raises the soft RLIMIT_NOFILE towards want, up to the hard
// limit (raising the hard limit needs CAP_SYS_RESOURCE, which a soak should
// not require). It returns the soft limit in force afterwards and the hard
// limit.
func RaiseFileLimit(want uint64) (soft, hard uint64, err error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, 0, fmt.Errorf("getrlimit NOFILE: %w", err)
	}
	if lim.Cur < want && lim.Cur < lim.Max {
		lim.Cur = min(want, lim.Max)
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			return 0, 0, fmt.Errorf("setrlimit NOFILE to %d: %w", lim.Cur, err)
		}
	}
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, 0, fmt.Errorf("getrlimit NOFILE: %w", err)
	}
	return lim.Cur, lim.Max, nil
}

// OpenFDs counts this process's open file descriptors (Linux: /proc/self/fd).
func OpenFDs() (int, error) {
	d, err := os.Open("/proc/self/fd")
	if err != nil {
		return 0, fmt.Errorf("counting open files: %w", err)
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return 0, fmt.Errorf("counting open files: %w", err)
	}
	return len(names) - 1, nil // the directory itself
}

// IBytes formats n bytes with a binary unit.
func IBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.2f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// FormatLosses prints loss counts by kind in a stable order: "(none)" or
// "(truncated=2, checksum=1)".
func FormatLosses(m map[string]int64) string {
	if len(m) == 0 {
		return "(none)"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%d", k, m[k])
	}
	return "(" + strings.Join(parts, ", ") + ")"
}
