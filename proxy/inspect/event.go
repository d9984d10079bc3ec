package inspect

import "fmt"

// Direction names one half of a relayed connection.
type Direction uint8

// The two directions of a relayed connection.
const (
	ClientToServer Direction = iota // bytes the client sent, forwarded to the upstream
	ServerToClient                  // bytes the upstream sent, forwarded to the client
)

func (d Direction) String() string {
	switch d {
	case ClientToServer:
		return "client_to_server"
	case ServerToClient:
		return "server_to_client"
	}
	return fmt.Sprintf("direction(%d)", uint8(d))
}

// EventKind says what an Event reports.
type EventKind uint8

// Event kinds. Handshake-message kinds are only emitted while the message is
// visible in plaintext; in the encrypted phase only KindRecord and
// KindApplicationData are emitted.
const (
	// KindRecord is a record whose contents are not inspected: a protected
	// record of a type other than application_data (an encrypted TLS 1.2
	// Finished or alert, a TLS 1.3 compatibility ChangeCipherSpec after the
	// ServerHello).
	KindRecord            EventKind = iota + 1
	KindClientHello                 // Event.ClientHello is set
	KindServerHello                 // Event.ServerHello is set
	KindHelloRetryRequest           // Event.ServerHello is set, with IsHelloRetryRequest
	KindCertificate                 // Event.Certificates holds the DER certificates (TLS 1.2 and older)
	KindCertificateRequest
	KindServerHelloDone
	KindHandshakeMessage // another plaintext handshake message; Event.HandshakeType says which
	KindAlert            // a plaintext alert; Event.Alert is set
	KindChangeCipherSpec // a plaintext ChangeCipherSpec record
	KindApplicationData  // a record of type application_data (23): protected data
	KindNotTLS           // the stream does not start with a TLS record; Event.Err is a *NotTLSError
	KindParseError       // inspection stopped on malformed or oversized input; Event.Err says why
)

var kindNames = [...]string{
	KindRecord:             "record",
	KindClientHello:        "client_hello",
	KindServerHello:        "server_hello",
	KindHelloRetryRequest:  "hello_retry_request",
	KindCertificate:        "certificate",
	KindCertificateRequest: "certificate_request",
	KindServerHelloDone:    "server_hello_done",
	KindHandshakeMessage:   "handshake_message",
	KindAlert:              "alert",
	KindChangeCipherSpec:   "change_cipher_spec",
	KindApplicationData:    "application_data",
	KindNotTLS:             "not_tls",
	KindParseError:         "parse_error",
}

func (k EventKind) String() string {
	if int(k) < len(kindNames) && kindNames[k] != "" {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// RecordType is the content type of a TLS record.
type RecordType uint8

// TLS record content types (RFC 8446, Section 5.1).
const (
	RecordChangeCipherSpec RecordType = 20
	RecordAlert            RecordType = 21
	RecordHandshake        RecordType = 22
	RecordApplicationData  RecordType = 23
)

func (t RecordType) String() string {
	switch t {
	case RecordChangeCipherSpec:
		return "change_cipher_spec"
	case RecordAlert:
		return "alert"
	case RecordHandshake:
		return "handshake"
	case RecordApplicationData:
		return "application_data"
	}
	return fmt.Sprintf("record_type(%d)", uint8(t))
}

// RecordHeader is the five-byte header of a TLS record.
type RecordHeader struct {
	Type    RecordType
	Version uint16 // legacy record version, e.g. 0x0303
	Length  uint16 // length of the record body that follows the header
}

// Alert is a TLS alert seen in plaintext.
type Alert struct {
	Level       uint8 // 1 warning, 2 fatal
	Description uint8 // e.g. 80 internal_error
}

// Alert levels (RFC 5246, Section 7.2).
const (
	AlertLevelWarning uint8 = 1
	AlertLevelFatal   uint8 = 2
)

// Fatal reports whether the alert has the fatal level. (TLS 1.3 ignores the
// level and treats every alert but close_notify and user_canceled as an error;
// callers that care check Description.)
func (a Alert) Fatal() bool { return a.Level == AlertLevelFatal }

func (a Alert) String() string {
	level := "warning"
	if a.Level == AlertLevelFatal {
		level = "fatal"
	} else if a.Level != AlertLevelWarning {
		level = fmt.Sprintf("level(%d)", a.Level)
	}
	return fmt.Sprintf("%s %s (%d)", level, AlertName(a.Description), a.Description)
}

// Event is one observation of a Parser. Only the fields that belong to Kind are
// set. An Event owns its data: nothing in it aliases the bytes passed to
// Parser.Write or the parser's buffers, so a sink may keep it.
type Event struct {
	Dir  Direction
	Kind EventKind
	// Offset is the position in this direction's byte stream where the record
	// carrying the event starts (for a handshake message split across records:
	// the record holding its first byte).
	Offset int64
	// Record is the header of that record. For KindNotTLS it holds whatever
	// header bytes were seen.
	Record RecordHeader

	ClientHello *ClientHello
	ServerHello *ServerHello // for KindServerHello and KindHelloRetryRequest
	// Certificates are the DER certificates of a plaintext (TLS 1.2 or older)
	// Certificate message, leaf first; empty when the peer sent none.
	Certificates [][]byte
	// CertificateRequestCAs are the DER distinguished names a plaintext
	// CertificateRequest lists as acceptable issuers.
	CertificateRequestCAs [][]byte
	Alert                 *Alert
	// HandshakeType is the handshake message type for every handshake-message
	// kind (1 for KindClientHello, 11 for KindCertificate, ...).
	HandshakeType uint8
	// Err says what was wrong for KindNotTLS (a *NotTLSError) and
	// KindParseError (wrapping ErrMalformed, ErrMessageTooLarge, ErrBadRecord
	// or ErrUnexpected).
	Err error
}

func (e Event) String() string {
	s := fmt.Sprintf("%s %s @%d", e.Dir, e.Kind, e.Offset)
	switch e.Kind {
	case KindRecord, KindApplicationData:
		s += fmt.Sprintf(" type=%d len=%d", e.Record.Type, e.Record.Length)
	case KindClientHello:
		if h := e.ClientHello; h != nil {
			s += fmt.Sprintf(" sni=%q alpn=%q max_version=%s", h.ServerName, h.ALPN, VersionName(h.MaxVersion()))
		}
	case KindServerHello, KindHelloRetryRequest:
		if h := e.ServerHello; h != nil {
			s += fmt.Sprintf(" version=%s cipher_suite=0x%04x", VersionName(h.Version), h.CipherSuite)
			if h.ALPN != "" {
				s += fmt.Sprintf(" alpn=%q", h.ALPN)
			}
		}
	case KindCertificate:
		s += fmt.Sprintf(" certificates=%d", len(e.Certificates))
	case KindCertificateRequest:
		s += fmt.Sprintf(" cas=%d", len(e.CertificateRequestCAs))
	case KindHandshakeMessage:
		s += " " + HandshakeName(e.HandshakeType)
	case KindAlert:
		if e.Alert != nil {
			s += " " + e.Alert.String()
		}
	case KindNotTLS, KindParseError:
		if e.Err != nil {
			s += ": " + e.Err.Error()
		}
	}
	return s
}

// VersionName returns the protocol version the way OpenTelemetry's
// tls.protocol.version attribute spells it: 0x0304 → "1.3", 0x0303 → "1.2",
// 0x0300 → "3" (SSL 3.0). Unknown values come back as hex, e.g. "0x7f1c".
func VersionName(v uint16) string {
	switch v {
	case 0x0300:
		return "3"
	case 0x0301:
		return "1.0"
	case 0x0302:
		return "1.1"
	case 0x0303:
		return "1.2"
	case 0x0304:
		return "1.3"
	}
	return fmt.Sprintf("0x%04x", v)
}

// alertNames are the registered TLS alert descriptions (IANA "TLS Alerts").
var alertNames = map[uint8]string{
	0:   "close_notify",
	10:  "unexpected_message",
	20:  "bad_record_mac",
	21:  "decryption_failed",
	22:  "record_overflow",
	30:  "decompression_failure",
	40:  "handshake_failure",
	41:  "no_certificate",
	42:  "bad_certificate",
	43:  "unsupported_certificate",
	44:  "certificate_revoked",
	45:  "certificate_expired",
	46:  "certificate_unknown",
	47:  "illegal_parameter",
	48:  "unknown_ca",
	49:  "access_denied",
	50:  "decode_error",
	51:  "decrypt_error",
	60:  "export_restriction",
	70:  "protocol_version",
	71:  "insufficient_security",
	80:  "internal_error",
	86:  "inappropriate_fallback",
	90:  "user_canceled",
	100: "no_renegotiation",
	109: "missing_extension",
	110: "unsupported_extension",
	111: "certificate_unobtainable",
	112: "unrecognized_name",
	113: "bad_certificate_status_response",
	114: "bad_certificate_hash_value",
	115: "unknown_psk_identity",
	116: "certificate_required",
	120: "no_application_protocol",
	121: "ech_required",
}

// AlertName returns the RFC name of a TLS alert description, e.g. 80 →
// "internal_error"; unregistered values come back as "alert(N)".
func AlertName(desc uint8) string {
	if n, ok := alertNames[desc]; ok {
		return n
	}
	return fmt.Sprintf("alert(%d)", desc)
}

// Handshake message types (RFC 8446, Section 4, and RFC 5246, Section 7.4).
const (
	HandshakeClientHello        uint8 = 1
	HandshakeServerHello        uint8 = 2
	HandshakeNewSessionTicket   uint8 = 4
	HandshakeEncryptedExtension uint8 = 8
	HandshakeCertificate        uint8 = 11
	HandshakeServerKeyExchange  uint8 = 12
	HandshakeCertificateRequest uint8 = 13
	HandshakeServerHelloDone    uint8 = 14
	HandshakeCertificateVerify  uint8 = 15
	HandshakeClientKeyExchange  uint8 = 16
	HandshakeFinished           uint8 = 20
)

var handshakeNames = [256]string{ // an array: looked up for every handshake event of every connection
	0:                           "hello_request",
	HandshakeClientHello:        "client_hello",
	HandshakeServerHello:        "server_hello",
	3:                           "hello_verify_request",
	HandshakeNewSessionTicket:   "new_session_ticket",
	5:                           "end_of_early_data",
	HandshakeEncryptedExtension: "encrypted_extensions",
	HandshakeCertificate:        "certificate",
	HandshakeServerKeyExchange:  "server_key_exchange",
	HandshakeCertificateRequest: "certificate_request",
	HandshakeServerHelloDone:    "server_hello_done",
	HandshakeCertificateVerify:  "certificate_verify",
	HandshakeClientKeyExchange:  "client_key_exchange",
	HandshakeFinished:           "finished",
	21:                          "certificate_url",
	22:                          "certificate_status",
	24:                          "key_update",
	254:                         "message_hash",
}

// HandshakeName returns the RFC name of a handshake message type, e.g. 11 →
// "certificate"; unregistered values come back as "handshake(N)".
func HandshakeName(t uint8) string {
	if n := handshakeNames[t]; n != "" {
		return n
	}
	return fmt.Sprintf("handshake(%d)", t)
}
