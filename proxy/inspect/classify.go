package inspect

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"time"

	"github.com/ccproxy-dev/ccproxy/internal/failure"
	"github.com/ccproxy-dev/ccproxy/proxy"
)

// Classifier decides the wire-level failure mode of one relayed connection
// from the events of both directions' parsers and the relay's own
// observations (dial outcome, how each direction ended). It is the one place
// where those modes are decided; evidence modes come from package attest and
// are combined by the caller.
//
// A Classifier is not safe for concurrent use: the caller serializes Observe,
// Dialed and Ended (the connection observer holds a mutex).
type Classifier struct {
	// IssuerDeadline is the silence after the ClientHello beyond which the
	// upstream is considered stuck in evidence issuance.
	IssuerDeadline time.Duration

	dialErr error
	dialed  bool

	clientBytes   int64
	hello         *ClientHello
	helloAt       instant
	clientNotTLS  *NotTLSError
	clientParse   error
	clientAlert   *Alert
	clientCCS     bool
	clientEnc     int // protected records from the client after the server's hello
	clientFirstEn int // length of the first of them
	clientEnded   error
	clientEndAt   instant

	upFirstAt  instant
	upNotTLS   *NotTLSError
	upParse    error
	upAlert    *Alert // plaintext alert from the upstream
	serverHi   *ServerHello
	upCCS      bool
	upEncAfter int // protected records from the upstream after the client's first protected record
	upEnc      int
	certs      [][]byte
	upEnded    error
	upEndAt    instant
	lastAlert  *Alert

	unanswered    string // the client's request the upstream ended the connection under
	unansweredEnd error
}

// instant is a time as Unix nanoseconds, 0 for none: 8 bytes where a
// time.Time takes 24, in a struct every open connection holds. The
// relay's times are wall-clock readings of when a chunk passed (no
// monotonic part), so nothing is lost.
type instant int64

func instantOf(t time.Time) instant {
	if t.IsZero() {
		return 0
	}
	return instant(t.UnixNano())
}

func (i instant) IsZero() bool                { return i == 0 }
func (i instant) Before(j instant) bool       { return i < j }
func (i instant) Sub(j instant) time.Duration { return time.Duration(i - j) }

// Dialed records the upstream dial's outcome.
func (c *Classifier) Dialed(err error) { c.dialed, c.dialErr = true, err }

// DialErr is the upstream dial's error, nil before Dialed or when it
// succeeded.
func (c *Classifier) DialErr() error { return c.dialErr }

// Data records that n bytes passed in dir at the given time. Call it for
// every chunk, before Observe for the events that chunk produced.
func (c *Classifier) Data(dir Direction, n int, at time.Time) {
	if dir == ClientToServer {
		c.clientBytes += int64(n)
		return
	}
	if c.upFirstAt.IsZero() && n > 0 {
		c.upFirstAt = instantOf(at)
	}
}

// Observe records one parser event.
func (c *Classifier) Observe(ev Event, at time.Time) {
	client := ev.Dir == ClientToServer
	switch ev.Kind {
	case KindClientHello:
		if client && c.hello == nil {
			c.hello, c.helloAt = ev.ClientHello, instantOf(at)
		}
	case KindServerHello:
		if !client && c.serverHi == nil {
			c.serverHi = ev.ServerHello
		}
	case KindCertificate:
		if !client && c.certs == nil {
			c.certs = ev.Certificates
		}
	case KindAlert:
		a := *ev.Alert
		c.lastAlert = &a
		if client {
			c.clientAlert = &a
		} else if c.upAlert == nil {
			c.upAlert = &a
		}
	case KindChangeCipherSpec:
		if client {
			c.clientCCS = true
		} else {
			c.upCCS = true
		}
	case KindApplicationData, KindRecord:
		if client {
			// Only after the server's hello can the client protect a
			// record (0-RTT aside), but this event may be observed before
			// the ServerHello's: the relay forwards before it inspects, so
			// the client can answer before the other direction is parsed.
			if c.clientEnc == 0 {
				c.clientFirstEn = int(ev.Record.Length)
			}
			c.clientEnc++
		} else {
			c.upEnc++
			if c.clientEnc > 0 {
				c.upEncAfter++
			}
		}
	case KindNotTLS:
		var nt *NotTLSError
		errors.As(ev.Err, &nt)
		if nt == nil {
			nt = &NotTLSError{Reason: ev.Err.Error()}
		}
		if client {
			c.clientNotTLS = nt
		} else {
			c.upNotTLS = nt
		}
	case KindParseError:
		if client {
			c.clientParse = ev.Err
		} else {
			c.upParse = ev.Err
		}
	}
}

// Ended records how dir ended: io.EOF for a FIN, else the error.
func (c *Classifier) Ended(dir Direction, err error, at time.Time) {
	if err == nil {
		err = io.EOF
	}
	if dir == ClientToServer {
		if c.clientEnded == nil {
			c.clientEnded, c.clientEndAt = err, instantOf(at)
		}
		return
	}
	if c.upEnded == nil {
		c.upEnded, c.upEndAt = err, instantOf(at)
	}
}

// Unanswered records that the upstream ended the connection (end: io.EOF
// for a FIN or a TLS close_notify, else the error) while the client still
// waited for the answer to its request (e.g. "GetManifests"). Only the
// client knows that: a relay sees the request, the missing answer and a
// close_notify only as protected records. ccproxy's probe, which is the
// client of its own connection, tells it. After a finished handshake the
// verdict is then upstream_reset.
func (c *Classifier) Unanswered(request string, end error) {
	if end == nil {
		end = io.EOF
	}
	if c.unanswered == "" {
		c.unanswered, c.unansweredEnd = request, end
	}
}

// Facts are what the classifier learned, for the connection's span.
type Facts struct {
	Hello         *ClientHello
	ServerHello   *ServerHello
	Version       uint16 // negotiated, 0 if unknown
	Alert         *Alert // the last plaintext alert seen
	FirstByte     time.Duration
	FirstByteSeen bool
	Certificates  [][]byte // TLS 1.2 server certificate chain, if seen
}

// Facts returns what was seen so far.
func (c *Classifier) Facts() Facts {
	f := Facts{Hello: c.hello, ServerHello: c.serverHi, Alert: c.lastAlert, Certificates: c.certs}
	if c.serverHi != nil {
		f.Version = c.serverHi.Version
	}
	if c.hello != nil && !c.upFirstAt.IsZero() {
		f.FirstByte, f.FirstByteSeen = c.upFirstAt.Sub(c.helloAt), true
	}
	return f
}

// WantsMore reports whether the classifier still learns from dir's bytes.
// Once the handshake is decided and a little application data has passed,
// the relay can hand the direction to the kernel.
func (c *Classifier) WantsMore(dir Direction) bool {
	if dir == ClientToServer {
		return c.clientNotTLS == nil && c.clientParse == nil && c.clientEnc < 4
	}
	return c.upNotTLS == nil && c.upParse == nil && c.upEnc < 16 && (c.upEncAfter < 2 || c.serverHi == nil)
}

// CompactHello keeps only the compact form of the ClientHello
// (ClientHello.Compact) once the client's side of the handshake is over,
// and returns it: Facts reports it from then on.
func (c *Classifier) CompactHello() *ClientHello {
	c.hello = c.hello.Compact()
	return c.hello
}

// CompactServerHello keeps only the compact form of the ServerHello
// (ServerHello.Compact) once the upstream's side of the handshake is over.
func (c *Classifier) CompactServerHello() { c.serverHi = c.serverHi.Compact() }

// HelloDone reports whether a complete ClientHello passed.
func (c *Classifier) HelloDone() bool { return c.hello != nil }

// Verdict is a failure mode with its one-sentence detail.
type Verdict struct {
	Mode   failure.Mode
	Detail string
}

// tls13AlertRecord is the size of a protected TLS 1.3 alert record: two
// alert bytes, the inner content type and a 16-byte AEAD tag. A client that
// rejects the server's certificate sends exactly this and closes; its
// Finished is at least 53 bytes.
const tls13AlertRecord = 19

// Verdict decides the connection's wire-level mode. Call it after both
// directions ended (or the connection was closed).
func (c *Classifier) Verdict() Verdict {
	if c.dialErr != nil {
		return dialVerdict(c.dialErr)
	}
	if v, ok := c.clientSide(); ok {
		return v
	}
	if v, ok := c.slowIssuer(); ok {
		return v
	}
	if v, ok := c.beforeServerHello(); ok {
		return v
	}
	return c.afterServerHello()
}

// clientSide decides the modes where the client never completed a
// ClientHello.
func (c *Classifier) clientSide() (Verdict, bool) {
	if c.clientNotTLS != nil {
		return Verdict{failure.ClientNotTLS, fmt.Sprintf("The client's first bytes are not a TLS handshake record (%s).", c.clientNotTLS.Error())}, true
	}
	if c.hello != nil {
		return Verdict{}, false
	}
	if c.upNotTLS != nil {
		return Verdict{failure.UpstreamNotTLS, fmt.Sprintf("The upstream spoke first, before any ClientHello, with bytes that are not TLS (%s).", c.upNotTLS.Error())}, true
	}
	if c.clientParse != nil {
		return Verdict{failure.ClientNotTLS, fmt.Sprintf("The client's ClientHello could not be parsed: %v.", c.clientParse)}, true
	}
	var late *proxy.HelloTimeoutError
	if errors.As(c.clientEnded, &late) {
		if c.clientBytes == 0 {
			return Verdict{failure.ClientAborted, fmt.Sprintf("No ClientHello came in time: the client sent no byte within the ClientHello timeout (%s), so ccproxy reset the connection.", late.Timeout)}, true
		}
		return Verdict{failure.ClientAborted, fmt.Sprintf("No ClientHello came in time: the client sent %d bytes but no complete ClientHello within the ClientHello timeout (%s), so ccproxy reset the connection.", c.clientBytes, late.Timeout)}, true
	}
	how := "closed the connection"
	switch {
	case errors.Is(c.clientEnded, io.EOF):
	case isIdle(c.clientEnded) || isIdle(c.upEnded):
		// Either direction's idle timer may fire first; the other then
		// ends with the relay's close, which is no act of the client.
		how = "went silent until the idle timeout"
	case c.clientEnded != nil:
		how = fmt.Sprintf("ended the connection (%v)", c.clientEnded)
	case c.upEnded != nil:
		return Verdict{failure.LBClosedEarly, fmt.Sprintf("The upstream closed the connection (%s) before the client sent a complete ClientHello (%d bytes received from the client).", endName(c.upEnded), c.clientBytes)}, true
	}
	if c.clientBytes == 0 {
		return Verdict{failure.ClientAborted, fmt.Sprintf("The client %s without sending any byte.", how)}, true
	}
	return Verdict{failure.ClientAborted, fmt.Sprintf("The client %s after %d bytes, before its ClientHello was complete.", how, c.clientBytes)}, true
}

// beforeServerHello decides the modes where the upstream never sent a
// ServerHello.
func (c *Classifier) beforeServerHello() (Verdict, bool) {
	if c.serverHi != nil {
		return Verdict{}, false
	}
	if c.upFirstAt.IsZero() {
		waited := c.waitedSinceHello()
		upFirst := c.clientEnded == nil || c.upEndAt.Before(c.clientEndAt)
		if c.upEnded != nil && upFirst && !isIdle(c.upEnded) && !errors.Is(c.upEnded, proxy.ErrAborted) {
			return Verdict{failure.LBClosedEarly, fmt.Sprintf("The upstream %s %s after the ClientHello without sending a single byte; the client sees EOF during the handshake.", endVerb(c.upEnded), roundMS(waited))}, true
		}
		if v, ok := c.unsupportedVersion(); ok {
			return v, true
		}
		who := "the client gave up first"
		if c.clientEnded == nil || isIdle(c.clientEnded) || isIdle(c.upEnded) {
			who = "the connection ended"
		}
		return Verdict{failure.IssuerTimeout, fmt.Sprintf("The upstream sent nothing for %s after the ClientHello (issuer deadline %s); %s.", roundMS(waited), c.IssuerDeadline, who)}, true
	}
	if c.upNotTLS != nil {
		return Verdict{failure.UpstreamNotTLS, fmt.Sprintf("The upstream answered the ClientHello with bytes that are not TLS (%s).", c.upNotTLS.Error())}, true
	}
	if c.upAlert != nil {
		if v, ok := c.unsupportedVersion(); ok {
			return v, true
		}
		if c.upAlert.Description == AlertInternalError {
			return Verdict{failure.IssuerError, fmt.Sprintf("The upstream answered the ClientHello with a plaintext internal_error alert after %s: the Coordinator could not issue its attestation document.", roundMS(c.upFirstAt.Sub(c.helloAt)))}, true
		}
		return Verdict{failure.TLSAlert, fmt.Sprintf("The upstream answered the ClientHello with a plaintext %s alert.", c.upAlert)}, true
	}
	if c.upParse != nil {
		return Verdict{failure.UpstreamNotTLS, fmt.Sprintf("The upstream's answer to the ClientHello could not be parsed as TLS: %v.", c.upParse)}, true
	}
	// Some server bytes, but no complete ServerHello.
	return Verdict{failure.LBClosedEarly, fmt.Sprintf("The upstream sent only part of a ServerHello, then the connection ended (%s).", endName(c.upEnded))}, true
}

// slowIssuer names a client that gave up waiting: its side ended before
// the upstream's first byte, which came (if at all) later than the issuer
// deadline after the ClientHello. A Coordinator that answers late to a
// client still waiting is slow, not failed, and is judged by what follows.
func (c *Classifier) slowIssuer() (Verdict, bool) {
	if c.upFirstAt.IsZero() || c.clientEnded == nil || !c.clientEndAt.Before(c.upFirstAt) {
		return Verdict{}, false
	}
	late := c.upFirstAt.Sub(c.helloAt)
	if late <= c.IssuerDeadline {
		return Verdict{}, false
	}
	return Verdict{failure.IssuerTimeout, fmt.Sprintf("The upstream's first byte came %s after the ClientHello (issuer deadline %s); the client had given up after %s.",
		roundMS(late), c.IssuerDeadline, roundMS(c.clientEndAt.Sub(c.helloAt)))}, true
}

// unsupportedVersion names a ClientHello whose atls ALPN entry has a version
// the Coordinator does not speak, when the handshake failed.
func (c *Classifier) unsupportedVersion() (Verdict, bool) {
	if c.hello == nil {
		return Verdict{}, false
	}
	for _, p := range c.hello.ALPN {
		if len(p) >= 5 && p[:5] == "atls:" && !hasPrefix(p, "atls:v1:nonce:") {
			return Verdict{failure.UnsupportedATLSVersion, fmt.Sprintf("The client offered ALPN %q; this Coordinator speaks only atls:v1, so it refused the handshake.", p)}, true
		}
	}
	return Verdict{}, false
}

func (c *Classifier) afterServerHello() Verdict {
	sh := c.serverHi
	ver := VersionName(sh.Version)
	if c.clientAlert != nil {
		if isCertAlert(c.clientAlert.Description) {
			return Verdict{failure.ClientRejectedCertificate, fmt.Sprintf("The client rejected the server's certificate with a %s alert (TLS %s).", c.clientAlert, ver)}
		}
		return Verdict{failure.TLSAlert, fmt.Sprintf("The client ended the TLS %s handshake with a %s alert.", ver, c.clientAlert)}
	}
	if c.upAlert != nil && c.upAlert.Description != AlertCloseNotify {
		return Verdict{failure.TLSAlert, fmt.Sprintf("The upstream ended the TLS %s handshake with a %s alert.", ver, c.upAlert)}
	}
	finished, rejected := c.handshakeFinished()
	if rejected {
		return Verdict{failure.ClientRejectedCertificate, fmt.Sprintf("After the server's encrypted TLS %s flight (%d records) the client sent only a %d-byte alert record and closed: it rejected the server's certificate.", ver, c.upEnc, c.clientFirstEn)}
	}
	if upstreamFault(c.upEnded, c.clientEnded) && (c.clientEnded == nil || c.upEndAt.Before(c.clientEndAt) || isWriteErr(c.clientEnded)) {
		phase := "after the handshake"
		if !finished {
			phase = "during the TLS " + ver + " handshake"
		}
		return Verdict{failure.UpstreamReset, fmt.Sprintf("The upstream reset the connection %s while the client was still connected (%v).", phase, c.upEnded)}
	}
	if errors.Is(c.upEnded, io.EOF) && isWriteErr(c.clientEnded) {
		return Verdict{failure.UpstreamReset, "The upstream closed the connection while the client was still sending."}
	}
	if finished && c.unanswered != "" {
		return Verdict{failure.UpstreamReset, fmt.Sprintf("The upstream ended the connection (%s) during %s, before it answered.", shortEndName(c.unansweredEnd), c.unanswered)}
	}
	if !finished {
		// The client ended first: the upstream's end, if any, came after
		// and is the relay passing the client's end on.
		if c.clientEnc == 0 && c.clientEnded != nil && (c.upEnded == nil || !c.upEndAt.Before(c.clientEndAt)) {
			return Verdict{failure.ClientRejectedCertificate, fmt.Sprintf("The client closed after the server's TLS %s flight without answering it (%s).", ver, endName(c.clientEnded))}
		}
		return Verdict{failure.LBClosedEarly, fmt.Sprintf("The TLS %s handshake did not finish: the upstream %s; the client %s.", ver, endName(c.upEnded), endName(c.clientEnded))}
	}
	return Verdict{failure.OK, fmt.Sprintf("TLS %s handshake finished and application data flowed.", ver)}
}

// PlainVerdict decides the mode of a connection relayed without TLS
// inspection (the Coordinator's HTTP API and transit ports): only the dial,
// the bytes counted and how each side ended are known.
func (c *Classifier) PlainVerdict(c2u, u2c int64) Verdict {
	if c.dialErr != nil {
		return dialVerdict(c.dialErr)
	}
	if upstreamFault(c.upEnded, c.clientEnded) && (c.clientEnded == nil || c.upEndAt.Before(c.clientEndAt) || isWriteErr(c.clientEnded)) {
		return Verdict{failure.UpstreamReset, fmt.Sprintf("The upstream reset the connection while the client was still connected (%v); %d bytes in, %d out.", c.upEnded, c2u, u2c)}
	}
	if c2u == 0 && u2c == 0 {
		return Verdict{failure.ClientAborted, fmt.Sprintf("The client %s without a byte in either direction (plain TCP, not inspected).", endName(c.clientEnded))}
	}
	return Verdict{failure.OK, fmt.Sprintf("Plain TCP relayed without TLS inspection: %d bytes to the upstream, %d back.", c2u, u2c)}
}

// handshakeFinished tells, from record types and sizes alone, whether the
// handshake completed, or whether the client rejected the server's flight.
func (c *Classifier) handshakeFinished() (finished, rejected bool) {
	if c.serverHi.Version >= 0x0304 {
		if c.clientEnc == 0 {
			return false, false
		}
		// The client's first protected record is its whole verdict on the
		// server's flight: an alert, or its (Certificate, ...,) Finished.
		return c.clientFirstEn != tls13AlertRecord, c.clientFirstEn == tls13AlertRecord
	}
	// TLS 1.2 and older: both sides switched to encryption.
	return c.clientCCS && c.upCCS, false
}

func (c *Classifier) waitedSinceHello() time.Duration {
	end := c.clientEndAt
	if end.IsZero() || (!c.upEndAt.IsZero() && c.upEndAt.Before(end)) {
		end = c.upEndAt
	}
	if end.IsZero() {
		end = instantOf(time.Now())
	}
	return end.Sub(c.helloAt)
}

// Alert descriptions the classifier names.
const (
	AlertCloseNotify   uint8 = 0
	AlertInternalError uint8 = 80
)

// isCertAlert reports the alerts a client sends when it does not accept the
// server's certificate (RFC 8446, 6.2).
func isCertAlert(d uint8) bool {
	switch d {
	case 42, 43, 44, 45, 46, 48, 49, 51:
		// bad_certificate, unsupported_certificate, certificate_revoked,
		// certificate_expired, certificate_unknown, unknown_ca,
		// access_denied, decrypt_error (a bad CertificateVerify)
		return true
	}
	return false
}

func dialVerdict(err error) Verdict {
	var dnsErr *net.DNSError
	switch {
	case proxy.IsExhausted(err):
		// Checked first: the dial failed in this process before a packet
		// left, so it says nothing about the upstream.
		return Verdict{failure.RelayResourceExhausted, fmt.Sprintf("ccproxy ran out of resources dialing the upstream (%v): the dial failed here, before a packet left, so nothing is known about the upstream; the client was reset.", err)}
	case errors.As(err, &dnsErr):
		if dnsErr.IsTimeout {
			return Verdict{failure.UpstreamDNSFailure, fmt.Sprintf("Resolving the upstream name %q timed out (%v).", dnsErr.Name, err)}
		}
		return Verdict{failure.UpstreamDNSFailure, fmt.Sprintf("The upstream name %q does not resolve (%v).", dnsErr.Name, dnsErr.Err)}
	case errors.Is(err, syscall.ECONNREFUSED):
		return Verdict{failure.UpstreamRefused, fmt.Sprintf("The upstream refused the TCP connection: nothing listens on that port (%v).", err)}
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH), errors.Is(err, syscall.EHOSTDOWN):
		// Checked before the timeouts: the network's own answer that no
		// packet can get there names the cause even if a deadline passed too.
		return Verdict{failure.UpstreamUnreachable, fmt.Sprintf("The dial failed with no route to the upstream (%v): a wrong address, a node or load balancer that is gone, a missing route, or a network policy or firewall that rejects.", err)}
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded), isTimeoutErr(err):
		return Verdict{failure.UpstreamDialTimeout, fmt.Sprintf("No TCP answer from the upstream in time (%v).", err)}
	}
	return Verdict{failure.UpstreamRefused, fmt.Sprintf("The upstream TCP connection failed (%v).", err)}
}

func isTimeoutErr(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// The ways a direction can end besides a FIN or a reset are the relay's
// errors (proxy.ErrIdle, proxy.ErrAborted, proxy.ErrWrite): the classifier
// tells an idle timeout or a shutdown from a fault of either peer by them.

func isIdle(err error) bool { return errors.Is(err, proxy.ErrIdle) }

// upstreamFault tells whether the upstream direction ended through a fault
// of the upstream: not a FIN, not the relay's idle timeout or shutdown, and
// not a failed write to a client that went away (a client's reset can reach
// that write before the client direction's read, which then sees only EOF).
// A failed write to the client while the client direction failed to write
// to the upstream is the upstream's: the relay reset the client because of it.
func upstreamFault(upEnded, clientEnded error) bool {
	return upEnded != nil && !errors.Is(upEnded, io.EOF) && !isIdle(upEnded) &&
		!errors.Is(upEnded, proxy.ErrAborted) && (!isWriteErr(upEnded) || isWriteErr(clientEnded))
}
func isWriteErr(err error) bool { return errors.Is(err, proxy.ErrWrite) }

func endName(err error) string {
	switch {
	case err == nil:
		return "was still open"
	case errors.Is(err, io.EOF):
		return "closed (FIN)"
	case isIdle(err):
		return "idled out"
	case errors.Is(err, proxy.ErrAborted):
		return "was closed at shutdown"
	case isWriteErr(err):
		return "could not be written to"
	}
	return fmt.Sprintf("failed (%v)", err)
}

// shortEndName says how a connection ended, in a parenthesis: FIN, or the
// error.
func shortEndName(err error) string {
	if errors.Is(err, io.EOF) {
		return "FIN"
	}
	return err.Error()
}

func endVerb(err error) string {
	if errors.Is(err, io.EOF) {
		return "closed the connection"
	}
	return "reset the connection"
}

func roundMS(d time.Duration) time.Duration {
	if d > time.Second {
		return d.Round(10 * time.Millisecond)
	}
	return d.Round(100 * time.Microsecond)
}

func hasPrefix(s, p string) bool { return len(s) >= len(p) && s[:len(p)] == p }
