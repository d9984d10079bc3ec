// Package inspect watches the bytes of a relayed TLS connection and reports
// what its handshake shows in plaintext: the ClientHello (SNI, ALPN, offered
// versions), the ServerHello (negotiated version, cipher suite), TLS 1.2
// certificates and certificate requests, plaintext alerts, and then only the
// types and sizes of protected records. It never changes, blocks or keeps the
// bytes it is given; a parse error ends inspection, never the connection.
//
// A relay feeds each direction's bytes, after forwarding them, to the parser
// of that direction:
//
//	c2s, s2c := inspect.NewConn(func(ev inspect.Event) { events <- ev })
//	// in the client→upstream copy loop, after each write to the upstream:
//	c2s.Write(buf[:n])
//	if c2s.Done() { /* switch this direction to splice */ }
//	// in the upstream→client loop likewise with s2c.
//
// What is reported when, per direction:
//
//   - Plaintext phase: one event per handshake message (ClientHello,
//     ServerHello, HelloRetryRequest, Certificate, CertificateRequest,
//     ServerHelloDone, or HandshakeMessage for the rest), per alert and per
//     ChangeCipherSpec record.
//   - The server direction turns encrypted after a TLS 1.3 ServerHello, or
//     after its ChangeCipherSpec in TLS 1.2 (a ChangeCipherSpec after a
//     HelloRetryRequest is TLS 1.3's compatibility dummy and changes nothing).
//   - The client direction turns encrypted with its first application_data
//     record (TLS 1.3), or after its ChangeCipherSpec when TLS 1.2 was
//     negotiated. The two parsers of a Conn share what the server's hello
//     negotiated for this. When the client's answer overtakes the server's
//     hello (the relay forwards a chunk before parsing it), a handshake record
//     after the client's ChangeCipherSpec is judged by its bytes: an exact,
//     well-formed ClientHello (the second one after a HelloRetryRequest) is
//     plaintext, anything else is TLS 1.2's encrypted Finished.
//   - Encrypted phase: one ApplicationData event per record of type 23 and a
//     Record event for every other record (an encrypted TLS 1.2 alert is a
//     Record of type 21, never an Alert), up to MaxEncryptedRecords.
//   - A stream whose first record header is not TLS gives one NotTLS event;
//     malformed or oversized input later gives one ParseError event. Both end
//     inspection of that direction.
//
// The parsers of a Conn may be written from their own goroutines at the same
// time.
package inspect

import (
	"fmt"
	"sync/atomic"

	"golang.org/x/crypto/cryptobyte"
)

const (
	recordHeaderLen = 5
	// maxRecordLen is the largest record body TLS allows (2^14 + 2048,
	// RFC 5246, Section 6.2.3), the limit crypto/tls enforces too.
	maxRecordLen = 16384 + 2048

	// DefaultMaxHandshakeMessage and DefaultMaxCertificateMessage are the
	// largest handshake messages crypto/tls reads (maxHandshake,
	// maxHandshakeCertificateMsg): whatever a Go peer accepts, the parser can
	// show.
	DefaultMaxHandshakeMessage   = 64 << 10
	DefaultMaxCertificateMessage = 256 << 10
	// DefaultMaxEncryptedRecords is how many protected records per direction
	// the parser reports before it stops.
	DefaultMaxEncryptedRecords = 64
)

// Config bounds what a Parser buffers and reports. The zero value uses the
// defaults.
type Config struct {
	// MaxHandshakeMessage caps one buffered handshake message other than
	// Certificate (default 64 KiB); a longer one ends inspection with
	// ErrMessageTooLarge.
	MaxHandshakeMessage int
	// MaxCertificateMessage caps a Certificate message (default 256 KiB).
	MaxCertificateMessage int
	// MaxEncryptedRecords is how many protected records per direction are
	// reported before the parser stops and ignores further input (default
	// 64; negative: no limit).
	MaxEncryptedRecords int
}

func (c Config) maxMessage(typ uint8) int {
	if typ == HandshakeCertificate {
		if c.MaxCertificateMessage > 0 {
			return c.MaxCertificateMessage
		}
		return DefaultMaxCertificateMessage
	}
	if c.MaxHandshakeMessage > 0 {
		return c.MaxHandshakeMessage
	}
	return DefaultMaxHandshakeMessage
}

func (c Config) maxEncryptedRecords() int {
	if c.MaxEncryptedRecords == 0 {
		return DefaultMaxEncryptedRecords
	}
	return c.MaxEncryptedRecords
}

// NewParser returns a parser for one direction with the default Config; see
// Config.NewParser.
func NewParser(dir Direction, sink func(Event)) *Parser {
	return Config{}.NewParser(dir, sink)
}

// NewConn returns the two parsers of one connection with the default Config;
// see Config.NewConn.
func NewConn(sink func(Event)) (c2s, s2c *Parser) {
	return Config{}.NewConn(sink)
}

// NewParser returns a parser for one direction that shares nothing with
// another. A client-direction parser made this way learns the negotiated
// version only through SetNegotiatedVersion; without it, it tells a TLS 1.2
// encrypted Finished from a TLS 1.3 second ClientHello by their bytes.
// sink is called synchronously from Write; nil discards events.
func (c Config) NewParser(dir Direction, sink func(Event)) *Parser {
	return &Parser{dir: dir, sink: sink, cfg: c, shared: new(sharedState)}
}

// NewConn returns the parsers of both directions of one connection. The
// server direction's ServerHello tells the client direction which version was
// negotiated. Each parser may be written from its own goroutine; sink is then
// called from both and must be safe for concurrent use.
func (c Config) NewConn(sink func(Event)) (c2s, s2c *Parser) {
	shared := new(sharedState)
	c2s = &Parser{dir: ClientToServer, sink: sink, cfg: c, shared: shared}
	s2c = &Parser{dir: ServerToClient, sink: sink, cfg: c, shared: shared}
	return c2s, s2c
}

// sharedState is what the two directions of a connection tell each other.
type sharedState struct {
	// version is the protocol version the server's hello negotiated, 0 while
	// unknown.
	version atomic.Uint32
}

// phase is where a direction's byte stream is in the protocol.
type phase uint8

const (
	// phasePlaintext: records carry plaintext handshake messages, alerts and
	// ChangeCipherSpec.
	phasePlaintext phase = iota
	// phaseCCSPending (client direction only): the client sent a
	// ChangeCipherSpec before the server's hello was parsed, so it is not yet
	// known whether it started TLS 1.2 encryption or was TLS 1.3's dummy.
	phaseCCSPending
	// phaseEncrypted: records are reported by type and size only.
	phaseEncrypted
	// phaseStopped: inspection is over; input is ignored.
	phaseStopped
)

// Parser inspects one direction of a TLS connection, incrementally. Write
// must not be called concurrently on the same Parser; Done, Version and
// SetNegotiatedVersion may be called from any goroutine.
type Parser struct {
	dir    Direction
	sink   func(Event)
	cfg    Config
	shared *sharedState
	done   atomic.Bool

	phase phase

	// The record being read.
	hdr       [recordHeaderLen]byte
	hdrN      int   // header bytes seen
	recStart  int64 // stream offset of the record's first header byte
	cur       RecordHeader
	remaining int    // body bytes still to come
	buffering bool   // the body is collected in rec (plaintext records)
	rec       []byte // body of a plaintext record

	// Handshake bytes of a message that continues in the next record.
	hs       []byte
	hsStart  int64 // offset of the record holding hs[0]
	hsRecord RecordHeader

	version    uint16 // server direction: version of its own ServerHello
	sawHRR     bool   // server direction: it sent a HelloRetryRequest
	encRecords int    // protected records seen
}

// Done reports whether inspection of this direction is over: on a NotTLS or
// ParseError event, once the direction is in its encrypted phase and has
// carried its first application_data record, or once MaxEncryptedRecords
// were reported. After Done the relay may stop calling Write; a parser that is
// Done only because application data flowed keeps reporting records until
// MaxEncryptedRecords if it is still fed.
func (p *Parser) Done() bool { return p.done.Load() }

// Version returns the protocol version the server's hello negotiated, as far
// as this parser (or, for a Conn, either parser) has seen it; 0 while unknown.
func (p *Parser) Version() uint16 { return uint16(p.shared.version.Load()) }

// SetNegotiatedVersion tells the parser the negotiated version when it cannot
// see the server's hello itself (a client-direction parser made by
// NewParser). Parsers made by NewConn do not need it.
func (p *Parser) SetNegotiatedVersion(v uint16) { p.shared.version.Store(uint32(v)) }

// Write inspects the next bytes of this direction's stream. It never blocks,
// never retains b and emits events synchronously to the sink.
func (p *Parser) Write(b []byte) {
	for len(b) > 0 && p.phase != phaseStopped {
		if p.hdrN < recordHeaderLen {
			n := copy(p.hdr[p.hdrN:], b)
			p.hdrN += n
			b = b[n:]
			if p.recStart == 0 && !p.checkFirstHeader(b) {
				return
			}
			if p.hdrN == recordHeaderLen {
				p.startRecord()
			}
			continue
		}
		n := min(p.remaining, len(b))
		if p.buffering {
			p.rec = append(p.rec, b[:n]...)
		}
		p.remaining -= n
		b = b[n:]
		if p.remaining == 0 {
			p.endRecord()
		}
	}
}

// checkFirstHeader judges the header bytes of the stream's first record as
// they arrive, so that a peer speaking another protocol is named at once. It
// applies crypto/tls's test ("first record does not look like a TLS
// handshake": type handshake or alert) plus the version and length bounds.
// rest is the remainder of the current write, quoted in the error.
func (p *Parser) checkFirstHeader(rest []byte) bool {
	h := p.hdr[:p.hdrN]
	var reason string
	switch {
	case h[0] != byte(RecordHandshake) && h[0] != byte(RecordAlert):
		reason = fmt.Sprintf("first record type %d (0x%02x) is neither handshake (22) nor alert (21)", h[0], h[0])
	case len(h) >= 2 && h[1] != 3:
		reason = fmt.Sprintf("record version major %d is not 3", h[1])
	case len(h) == recordHeaderLen && int(h[3])<<8|int(h[4]) > maxRecordLen:
		reason = fmt.Sprintf("record length %d exceeds %d", int(h[3])<<8|int(h[4]), maxRecordLen)
	default:
		return true
	}
	first := make([]byte, 0, notTLSPrefix)
	first = append(first, h...)
	first = append(first, rest[:min(len(rest), notTLSPrefix-len(h))]...)
	rh := RecordHeader{Type: RecordType(h[0])}
	if len(h) >= 3 {
		rh.Version = uint16(h[1])<<8 | uint16(h[2])
	}
	if len(h) == recordHeaderLen {
		rh.Length = uint16(h[3])<<8 | uint16(h[4])
	}
	p.emit(Event{Kind: KindNotTLS, Offset: 0, Record: rh, Err: &NotTLSError{Reason: reason, FirstBytes: first}})
	p.stop()
	return false
}

// startRecord acts on a complete record header.
func (p *Parser) startRecord() {
	p.cur = RecordHeader{
		Type:    RecordType(p.hdr[0]),
		Version: uint16(p.hdr[1])<<8 | uint16(p.hdr[2]),
		Length:  uint16(p.hdr[3])<<8 | uint16(p.hdr[4]),
	}
	switch {
	case p.cur.Type < RecordChangeCipherSpec || p.cur.Type > RecordApplicationData:
		p.fail(fmt.Errorf("%w: content type %d", ErrBadRecord, p.cur.Type))
		return
	case p.hdr[1] != 3:
		p.fail(fmt.Errorf("%w: version 0x%04x is not 3.x", ErrBadRecord, p.cur.Version))
		return
	case p.cur.Length > maxRecordLen:
		p.fail(fmt.Errorf("%w: length %d exceeds %d", ErrBadRecord, p.cur.Length, maxRecordLen))
		return
	}
	p.remaining = int(p.cur.Length)
	p.buffering = false
	switch {
	case p.phase == phaseEncrypted:
		p.encryptedRecord()
	case p.cur.Type == RecordApplicationData:
		if p.dir == ServerToClient {
			// A server protects records only after its ServerHello (TLS 1.3)
			// or ChangeCipherSpec (TLS 1.2); crypto/tls rejects this too.
			p.fail(fmt.Errorf("%w: application_data record before the server's key change", ErrUnexpected))
			return
		}
		// The client's first protected record: TLS 1.3 (or 0-RTT early
		// data) right after its ClientHello or compatibility
		// ChangeCipherSpec.
		if !p.enterEncrypted() {
			return
		}
		p.encryptedRecord()
	default:
		p.buffering = true
		if cap(p.rec) < p.remaining {
			p.rec = make([]byte, 0, p.remaining)
		}
		p.rec = p.rec[:0]
	}
	if p.remaining == 0 && p.phase != phaseStopped {
		p.endRecord()
	}
}

// endRecord acts on a record whose body is complete.
func (p *Parser) endRecord() {
	next := p.recStart + recordHeaderLen + int64(p.cur.Length)
	defer func() { p.recStart, p.hdrN = next, 0 }()
	if !p.buffering || p.phase == phaseStopped {
		return
	}
	p.buffering = false
	body := p.rec
	p.rec = reuse(p.rec)
	if p.phase == phaseCCSPending && p.cur.Type != RecordChangeCipherSpec && !p.plaintextAfterCCS(body) {
		if p.enterEncrypted() {
			p.encryptedRecord()
		}
		return
	}
	switch p.cur.Type {
	case RecordHandshake:
		p.handshakeRecord(body)
	case RecordAlert:
		p.alertRecord(body)
	case RecordChangeCipherSpec:
		p.changeCipherSpec(body)
	}
}

// plaintextAfterCCS decides, for a handshake or alert record that follows the
// client's ChangeCipherSpec, whether it is plaintext (TLS 1.3: a second
// ClientHello after a HelloRetryRequest, or an alert) or protected (TLS 1.2:
// the encrypted Finished or an encrypted alert). Once the version is known
// the pending state ends: TLS 1.3 returns to the plaintext phase here, TLS 1.2
// is switched to encrypted by the caller.
func (p *Parser) plaintextAfterCCS(body []byte) bool {
	if v := p.Version(); v != 0 {
		if v >= 0x0304 {
			p.phase = phasePlaintext
			return true
		}
		return false
	}
	// The server's hello is forwarded before it is parsed, so the client's
	// answer can overtake it. Judge by the bytes: a protected record is
	// indistinguishable from random, which is very unlikely to frame an
	// exact, well-formed ClientHello or a two-byte alert. (A second
	// ClientHello spread over several records would be taken for protected
	// records; Go's and browsers' fit in one.)
	switch p.cur.Type {
	case RecordHandshake:
		if len(p.hs) != 0 {
			return false
		}
		_, err := ParseClientHello(body)
		return err == nil
	case RecordAlert:
		return len(body) == 2 && (body[0] == AlertLevelWarning || body[0] == AlertLevelFatal)
	}
	return false
}

// handshakeRecord reassembles handshake messages and handles each complete
// one. Messages may span records and records may hold several messages.
func (p *Parser) handshakeRecord(body []byte) {
	data := body
	if len(p.hs) > 0 {
		p.hs = append(p.hs, body...)
		data = p.hs
	} else {
		p.hsStart, p.hsRecord = p.recStart, p.cur
	}
	for len(data) >= 4 {
		typ := data[0]
		n := int(data[1])<<16 | int(data[2])<<8 | int(data[3])
		if limit := p.cfg.maxMessage(typ); n > limit {
			p.fail(fmt.Errorf("%w: %s of %d bytes exceeds %d", ErrMessageTooLarge, HandshakeName(typ), n, limit))
			return
		}
		if len(data) < 4+n {
			break
		}
		if !p.handshakeMessage(typ, data[:4+n]) {
			return
		}
		data = data[4+n:]
		// Every later message starts in the current record: only the first
		// one can have begun in an earlier record.
		p.hsStart, p.hsRecord = p.recStart, p.cur
		if p.phase != phasePlaintext && p.phase != phaseCCSPending {
			// A TLS 1.3 ServerHello changed the keys: the rest of the
			// record must not continue in plaintext (RFC 8446, Section 5.1).
			if len(data) > 0 {
				p.fail(fmt.Errorf("%w: %d bytes of handshake data after the ServerHello in the same record", ErrUnexpected, len(data)))
			}
			return
		}
	}
	// Keep the incomplete rest for the next record.
	switch {
	case len(data) == 0:
		p.hs = reuse(p.hs)
	case len(p.hs) > 0:
		p.hs = append(p.hs[:0], data...)
	default:
		p.hs = append(p.hs, data...)
	}
}

// keepBuffer is the largest buffer a parser keeps between records: enough
// for the usual small handshake records, while one large Certificate does
// not stay allocated for the life of a stalled connection.
const keepBuffer = 4 << 10

// Release lets go of the parser's record buffer; call it when the parser
// will not be written again (the relay stopped inspecting its direction,
// or the connection ended), so that a parser still referenced holds none.
//
// (Pooling these buffers across connections halved a short connection's
// allocations but held 3.5 MiB more at 10,000 idle connections, measured;
// the idle memory goal won.)
func (p *Parser) Release() {
	if p == nil {
		return
	}
	p.rec = nil
}

// reuse empties buf for reuse, or drops it when it is large.
func reuse(buf []byte) []byte {
	if cap(buf) > keepBuffer {
		return nil
	}
	return buf[:0]
}

// handshakeMessage handles one complete handshake message (with its header).
// It returns false when inspection stopped.
func (p *Parser) handshakeMessage(typ uint8, msg []byte) bool {
	ev := Event{Kind: KindHandshakeMessage, Offset: p.hsStart, Record: p.hsRecord, HandshakeType: typ}
	body := cryptobyte.String(msg[4:])
	switch {
	case typ == HandshakeClientHello && p.dir == ClientToServer:
		var ch ClientHello
		if !ch.unmarshal(body) {
			p.failAt(ev, fmt.Errorf("%w: ClientHello of %d bytes", ErrMalformed, len(msg)))
			return false
		}
		ev.Kind, ev.ClientHello = KindClientHello, &ch
	case typ == HandshakeServerHello && p.dir == ServerToClient:
		var sh ServerHello
		if !sh.unmarshal(body) {
			p.failAt(ev, fmt.Errorf("%w: ServerHello of %d bytes", ErrMalformed, len(msg)))
			return false
		}
		ev.ServerHello = &sh
		if sh.IsHelloRetryRequest {
			// Only TLS 1.3 has HelloRetryRequest, whatever the
			// (mandatory) supported_versions says.
			ev.Kind = KindHelloRetryRequest
			p.sawHRR = true
			p.version = max(sh.Version, 0x0304)
		} else {
			ev.Kind = KindServerHello
			p.version = sh.Version
		}
		p.shared.version.Store(uint32(p.version))
		p.emit(ev)
		if !sh.IsHelloRetryRequest && sh.Version >= 0x0304 {
			// Everything after a TLS 1.3 ServerHello is protected.
			return p.enterEncrypted()
		}
		return true
	case typ == HandshakeCertificate:
		certs, ok := parseCertificateList(body)
		if !ok {
			p.failAt(ev, fmt.Errorf("%w: Certificate of %d bytes", ErrMalformed, len(msg)))
			return false
		}
		ev.Kind, ev.Certificates = KindCertificate, certs
	case typ == HandshakeCertificateRequest && p.dir == ServerToClient:
		// TLS 1.2 added the signature algorithms to the request.
		v := p.version
		if v == 0 {
			v = 0x0303
		}
		cas, ok := parseCertificateRequest(body, v >= 0x0303)
		if !ok {
			p.failAt(ev, fmt.Errorf("%w: CertificateRequest of %d bytes", ErrMalformed, len(msg)))
			return false
		}
		ev.Kind, ev.CertificateRequestCAs = KindCertificateRequest, cas
	case typ == HandshakeServerHelloDone && p.dir == ServerToClient:
		if !body.Empty() {
			p.failAt(ev, fmt.Errorf("%w: ServerHelloDone with a %d-byte body", ErrMalformed, len(body)))
			return false
		}
		ev.Kind = KindServerHelloDone
	}
	p.emit(ev)
	return true
}

// alertRecord reports the plaintext alerts of one record.
func (p *Parser) alertRecord(body []byte) {
	if len(p.hs) > 0 {
		p.fail(fmt.Errorf("%w: alert inside a fragmented handshake message", ErrUnexpected))
		return
	}
	if len(body) == 0 || len(body)%2 != 0 {
		p.fail(fmt.Errorf("%w: alert record of %d bytes (%s)", ErrMalformed, len(body), describeBytes(body, 8)))
		return
	}
	for ; len(body) > 0; body = body[2:] {
		p.emit(Event{Kind: KindAlert, Offset: p.recStart, Record: p.cur, Alert: &Alert{Level: body[0], Description: body[1]}})
	}
}

// changeCipherSpec handles a plaintext ChangeCipherSpec record: in TLS 1.2 it
// starts encryption in its direction; in TLS 1.3 it is a dummy sent for
// middlebox compatibility and changes nothing.
func (p *Parser) changeCipherSpec(body []byte) {
	if len(p.hs) > 0 {
		p.fail(fmt.Errorf("%w: ChangeCipherSpec inside a fragmented handshake message", ErrUnexpected))
		return
	}
	if len(body) != 1 || body[0] != 1 {
		p.fail(fmt.Errorf("%w: ChangeCipherSpec body %s, want 01", ErrMalformed, describeBytes(body, 8)))
		return
	}
	p.emit(Event{Kind: KindChangeCipherSpec, Offset: p.recStart, Record: p.cur})
	if p.dir == ServerToClient {
		// A server in the plaintext phase has not sent a TLS 1.3
		// ServerHello (that starts encryption), so its CCS is TLS 1.3's
		// dummy only after a HelloRetryRequest.
		if !p.sawHRR {
			p.enterEncrypted()
		}
		return
	}
	switch v := p.Version(); {
	case v >= 0x0304:
		p.phase = phasePlaintext
	case v != 0:
		p.enterEncrypted()
	default:
		p.phase = phaseCCSPending
	}
}

// enterEncrypted switches to the encrypted phase and releases the plaintext
// buffers. It returns false (and stops) when a handshake message was cut off
// by the key change.
func (p *Parser) enterEncrypted() bool {
	if len(p.hs) > 0 {
		p.fail(fmt.Errorf("%w: %d bytes of an unfinished handshake message before the key change", ErrUnexpected, len(p.hs)))
		return false
	}
	p.phase = phaseEncrypted
	p.hs, p.rec = nil, nil
	return true
}

// encryptedRecord reports a protected record. It allocates nothing: this is
// the per-record path for the rest of the connection.
func (p *Parser) encryptedRecord() {
	limit := p.cfg.maxEncryptedRecords()
	p.encRecords++
	kind := KindRecord
	if p.cur.Type == RecordApplicationData {
		kind = KindApplicationData
	}
	p.emit(Event{Kind: kind, Offset: p.recStart, Record: p.cur})
	if kind == KindApplicationData && !p.done.Load() {
		p.done.Store(true)
	}
	if limit >= 0 && p.encRecords >= limit {
		p.stop()
	}
}

// fail ends inspection with a ParseError about the current record.
func (p *Parser) fail(err error) {
	p.failAt(Event{Offset: p.recStart, Record: p.cur}, err)
}

// failAt ends inspection with a ParseError located like ev.
func (p *Parser) failAt(ev Event, err error) {
	ev.Kind, ev.Err = KindParseError, err
	ev.ClientHello, ev.ServerHello, ev.Certificates, ev.CertificateRequestCAs, ev.Alert = nil, nil, nil, nil, nil
	p.emit(ev)
	p.stop()
}

// stop ends inspection and frees the buffers.
func (p *Parser) stop() {
	p.phase = phaseStopped
	p.hs, p.rec = nil, nil
	p.done.Store(true)
}

func (p *Parser) emit(ev Event) {
	if p.sink == nil {
		return
	}
	ev.Dir = p.dir
	p.sink(ev)
}

// describeBytes renders up to max bytes as hex for error texts.
func describeBytes(b []byte, max int) string {
	if len(b) > max {
		return fmt.Sprintf("%x…", b[:max])
	}
	return fmt.Sprintf("%x", b)
}
