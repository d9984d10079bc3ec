package tunnel

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	"github.com/quic-go/quic-go"
	"golang.org/x/crypto/cryptobyte"

	"github.com/ccproxy-dev/ccproxy/internal/failure"
)

// ALPN is the application protocol both sides offer in the QUIC handshake.
// Its version is the version of everything on the wire below; a peer that
// speaks another fails the handshake with no_application_protocol.
const ALPN = "ccproxy-tunnel/1"

// HeaderVersion is the version byte that opens every stream header.
const HeaderVersion = 1

// Limits on what a peer may send; anything larger is a protocol error.
const (
	maxHeaderBody  = 1024
	maxRouteName   = 63
	maxTraceParent = 255
	maxTraceState  = 512
	maxControlBody = 8 << 10
	maxMode        = 64
	maxDetail      = 4096
	maxUpstream    = 255
)

// Stream error codes (RESET_STREAM / STOP_SENDING on a relay stream).
const (
	// codeReset mirrors a TCP reset: one end of the relayed connection
	// reset, or the relay gave up on it (idle timeout, upstream dial
	// failure). The verdict follows on the control stream.
	codeReset quic.StreamErrorCode = 0x1
	// codeBadHeader: the stream header was malformed, too large, of an
	// unknown version or did not arrive within the header timeout.
	codeBadHeader quic.StreamErrorCode = 0x2
	// codeUnknownRoute: the header named a route the server does not have.
	codeUnknownRoute quic.StreamErrorCode = 0x3
	// codeBusy: the server is at its connection limit.
	codeBusy quic.StreamErrorCode = 0x4
	// codeShutdown: the server is draining and takes no new streams.
	codeShutdown quic.StreamErrorCode = 0x5
)

// Connection error codes (CONNECTION_CLOSE).
const (
	connDone     quic.ApplicationErrorCode = 0x0 // orderly close
	connShutdown quic.ApplicationErrorCode = 0x1 // the closing side shuts down
	connProtocol quic.ApplicationErrorCode = 0x2 // the peer broke this protocol
)

// Header opens every relay stream, client to server. It carries no
// address: the server relays only to the routes it was configured with,
// and Route merely picks one of them by name.
type Header struct {
	Route       string // a route name; "" picks the server's default route
	TraceParent string // W3C traceparent of the local side's stream span, or ""
	TraceState  string // W3C tracestate, or ""
}

// Marshal encodes h:
//
//	uint8  version (HeaderVersion)
//	uint16 length of the body, at most 1024
//	body:  uint8-prefixed route name, uint8-prefixed traceparent,
//	       uint16-prefixed tracestate
func (h Header) Marshal() ([]byte, error) {
	if err := h.validate(); err != nil {
		return nil, err
	}
	var b cryptobyte.Builder
	b.AddUint8(HeaderVersion)
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
		b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes([]byte(h.Route)) })
		b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes([]byte(h.TraceParent)) })
		b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes([]byte(h.TraceState)) })
	})
	out, err := b.Bytes()
	if err != nil {
		return nil, fmt.Errorf("encode stream header: %w", err)
	}
	if len(out)-3 > maxHeaderBody {
		return nil, fmt.Errorf("stream header of %d bytes exceeds %d", len(out)-3, maxHeaderBody)
	}
	return out, nil
}

func (h Header) validate() error {
	if err := ValidRouteName(h.Route); h.Route != "" && err != nil {
		return err
	}
	if len(h.TraceParent) > maxTraceParent || !printable(h.TraceParent) {
		return errors.New("traceparent is not printable ASCII of at most 255 bytes")
	}
	if len(h.TraceState) > maxTraceState || !printable(h.TraceState) {
		return errors.New("tracestate is not printable ASCII of at most 512 bytes")
	}
	return nil
}

// ReadHeader reads exactly one header from r and nothing more, so the
// bytes after it are the relayed connection's, untouched.
func ReadHeader(r io.Reader) (Header, error) {
	var pre [3]byte
	if _, err := io.ReadFull(r, pre[:]); err != nil {
		return Header{}, fmt.Errorf("read stream header: %w", err)
	}
	if pre[0] != HeaderVersion {
		return Header{}, fmt.Errorf("stream header version %d, this server speaks %d", pre[0], HeaderVersion)
	}
	n := int(pre[1])<<8 | int(pre[2])
	if n > maxHeaderBody {
		return Header{}, fmt.Errorf("stream header body of %d bytes exceeds %d", n, maxHeaderBody)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return Header{}, fmt.Errorf("read stream header body: %w", err)
	}
	return parseHeaderBody(body)
}

func parseHeaderBody(body []byte) (Header, error) {
	s := cryptobyte.String(body)
	var route, tp, ts cryptobyte.String
	if !s.ReadUint8LengthPrefixed(&route) || !s.ReadUint8LengthPrefixed(&tp) ||
		!s.ReadUint16LengthPrefixed(&ts) || !s.Empty() {
		return Header{}, errors.New("malformed stream header")
	}
	h := Header{Route: string(route), TraceParent: string(tp), TraceState: string(ts)}
	if err := h.validate(); err != nil {
		return Header{}, fmt.Errorf("stream header: %w", err)
	}
	return h, nil
}

// ValidRouteName reports whether name can name a route: 1 to 63 letters,
// digits, '.', '_' or '-'. A name is never an address, so a client cannot
// smuggle a target in it (':' is not allowed).
func ValidRouteName(name string) error {
	if name == "" || len(name) > maxRouteName {
		return fmt.Errorf("route name %q: want 1 to %d characters", name, maxRouteName)
	}
	for _, c := range []byte(name) {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '_', c == '-':
		default:
			return fmt.Errorf("route name %q: only letters, digits, '.', '_' and '-' are allowed", name)
		}
	}
	return nil
}

func printable(s string) bool {
	for _, c := range []byte(s) {
		if c < 0x20 || c > 0x7e {
			return false
		}
	}
	return true
}

// Control messages, server to client, on the one unidirectional stream the
// server opens per connection. Each is
//
//	uint8  type
//	uint16 length of the body, at most 8 KiB
//	body
//
// A client skips types it does not know.
type msgType uint8

const (
	// msgHello is the first message: the server accepted this client's
	// certificate. Body: uint8 version (HeaderVersion).
	msgHello msgType = 1
	// msgVerdict ends one relay stream. Body: uint64 stream ID,
	// uint8-prefixed failure mode, uint16-prefixed detail, uint8-prefixed
	// upstream address.
	msgVerdict msgType = 2
	// msgGoAway: the server is draining. Streams already open finish;
	// new ones belong on a new connection. Empty body.
	msgGoAway msgType = 3
)

func marshalMsg(t msgType, body []byte) ([]byte, error) {
	if len(body) > maxControlBody {
		return nil, fmt.Errorf("control message of %d bytes exceeds %d", len(body), maxControlBody)
	}
	out := make([]byte, 3, 3+len(body))
	out[0] = byte(t)
	out[1], out[2] = byte(len(body)>>8), byte(len(body))
	return append(out, body...), nil
}

// readMsg reads one control message.
func readMsg(r io.Reader) (msgType, []byte, error) {
	var pre [3]byte
	if _, err := io.ReadFull(r, pre[:]); err != nil {
		return 0, nil, err
	}
	n := int(pre[1])<<8 | int(pre[2])
	if n > maxControlBody {
		return 0, nil, fmt.Errorf("control message of %d bytes exceeds %d", n, maxControlBody)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return 0, nil, err
	}
	return msgType(pre[0]), body, nil
}

func parseHello(body []byte) error {
	if len(body) < 1 {
		return errors.New("empty hello")
	}
	if body[0] != HeaderVersion {
		return fmt.Errorf("server speaks tunnel version %d, this client %d", body[0], HeaderVersion)
	}
	return nil
}

// Verdict is the outcome of one tunnelled connection, as the relay at the
// far end named it.
type Verdict struct {
	Mode     failure.Mode
	Detail   string
	Upstream string // the route's upstream as the server has it configured
}

func marshalVerdict(id quic.StreamID, v Verdict) ([]byte, error) {
	mode := string(v.Mode)
	if !validMode(mode) {
		return nil, fmt.Errorf("failure mode %q is not a mode name", mode)
	}
	detail := clip(sanitize(v.Detail), maxDetail)
	up := v.Upstream
	if len(up) > maxUpstream || !printable(up) {
		up = ""
	}
	var b cryptobyte.Builder
	b.AddUint64(uint64(id))
	b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes([]byte(mode)) })
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes([]byte(detail)) })
	b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes([]byte(up)) })
	body, err := b.Bytes()
	if err != nil {
		return nil, fmt.Errorf("encode verdict: %w", err)
	}
	return marshalMsg(msgVerdict, body)
}

func parseVerdict(body []byte) (quic.StreamID, Verdict, error) {
	s := cryptobyte.String(body)
	var id uint64
	var mode, detail, up cryptobyte.String
	if !s.ReadUint64(&id) || !s.ReadUint8LengthPrefixed(&mode) || !s.ReadUint16LengthPrefixed(&detail) ||
		!s.ReadUint8LengthPrefixed(&up) || !s.Empty() {
		return 0, Verdict{}, errors.New("malformed verdict")
	}
	// Stream IDs are 62-bit QUIC varints.
	if id >= 1<<62 {
		return 0, Verdict{}, fmt.Errorf("verdict for stream %d: not a QUIC stream ID", id)
	}
	if !validMode(string(mode)) {
		return 0, Verdict{}, fmt.Errorf("verdict mode %q is not a mode name", string(mode))
	}
	if len(detail) > maxDetail {
		return 0, Verdict{}, fmt.Errorf("verdict detail of %d bytes exceeds %d", len(detail), maxDetail)
	}
	if !printable(string(up)) {
		return 0, Verdict{}, errors.New("verdict upstream is not printable ASCII")
	}
	// A newer server may name modes this build does not know: keep them
	// (the contract lets modes be added), but only as plain names.
	return quic.StreamID(id), Verdict{
		Mode:     failure.Mode(mode),
		Detail:   sanitize(string(detail)),
		Upstream: string(up),
	}, nil
}

// validMode accepts the shape of a failure mode name: lower-case letters,
// digits and '_', so a peer cannot put arbitrary text in a label.
func validMode(m string) bool {
	if m == "" || len(m) > maxMode {
		return false
	}
	for _, c := range []byte(m) {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// sanitize makes peer text safe for a log line: valid UTF-8 without
// control characters.
func sanitize(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}

// clip shortens s to at most n bytes on a rune boundary.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
