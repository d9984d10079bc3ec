package inspect

import (
	"bytes"
	"errors"
	"fmt"

	"golang.org/x/crypto/cryptobyte"
)

// Errors a KindParseError event wraps, for errors.Is.
var (
	// ErrMalformed: a record or handshake message does not follow the TLS
	// encoding (a length that runs past its container, a missing field).
	ErrMalformed = errors.New("malformed TLS message")
	// ErrMessageTooLarge: a handshake message is longer than the parser buffers
	// (by default what crypto/tls accepts: 64 KiB, 256 KiB for Certificate).
	ErrMessageTooLarge = errors.New("TLS handshake message too large")
	// ErrBadRecord: a record header after the first one has an unknown content
	// type, a version that is not 3.x, or a length above 2^14+2048.
	ErrBadRecord = errors.New("bad TLS record header")
	// ErrUnexpected: a well-formed record or message in a place the protocol
	// does not allow it (application data before the handshake, handshake
	// bytes left over across a key change).
	ErrUnexpected = errors.New("unexpected TLS record")
)

// TLS extension code points the parser reads (IANA "TLS ExtensionType Values").
const (
	extServerName          uint16 = 0
	extSupportedGroups     uint16 = 10
	extSignatureAlgorithms uint16 = 13
	extALPN                uint16 = 16
	extPreSharedKey        uint16 = 41
	extEarlyData           uint16 = 42
	extSupportedVersions   uint16 = 43
	extKeyShare            uint16 = 51
)

// helloRetryRequestRandom is the ServerHello.random that marks a
// HelloRetryRequest (RFC 8446, Section 4.1.3).
var helloRetryRequestRandom = [32]byte{
	0xCF, 0x21, 0xAD, 0x74, 0xE5, 0x9A, 0x61, 0x11,
	0xBE, 0x1D, 0x8C, 0x02, 0x1E, 0x65, 0xB8, 0x91,
	0xC2, 0xA2, 0x11, 0x16, 0x7A, 0xBB, 0x8C, 0x5E,
	0x07, 0x9E, 0x09, 0xE2, 0xC8, 0xA8, 0x33, 0x9C,
}

// ClientHello is what a ClientHello shows in plaintext. Lists keep the order
// and the GREASE values the client sent.
type ClientHello struct {
	LegacyVersion      uint16
	Random             [32]byte
	SessionID          []byte
	CipherSuites       []uint16
	CompressionMethods []uint8
	// Extensions are the extension types in the order sent.
	Extensions []uint16
	// ServerName is the host_name entry of server_name, exactly as sent
	// (Contrast's older clients put the base64 nonce here).
	ServerName string
	// ALPN lists the offered application protocols (Contrast's newer clients
	// put "atls:v1:nonce:<hex>" before "h2").
	ALPN                []string
	SupportedVersions   []uint16
	SupportedGroups     []uint16
	KeyShareGroups      []uint16 // groups of the key shares sent
	SignatureAlgorithms []uint16
	EarlyData           bool // early_data offered (0-RTT)
	PreSharedKey        bool // a PSK (session resumption) offered
}

// Compact returns a copy with only what is needed once the handshake is
// over: the server name, ALPN and versions (the root span's attributes,
// the nonce, a probe's TLS version). A connection may then stay open for
// hours; the rest of the hello (random, session ID, suites, groups,
// extensions) is several hundred bytes it need not keep.
func (c *ClientHello) Compact() *ClientHello {
	if c == nil {
		return nil
	}
	return &ClientHello{
		LegacyVersion:     c.LegacyVersion,
		ServerName:        c.ServerName,
		ALPN:              c.ALPN,
		SupportedVersions: c.SupportedVersions,
	}
}

// MaxVersion is the highest protocol version the client offers, ignoring
// GREASE values: from supported_versions when present, else LegacyVersion.
func (c *ClientHello) MaxVersion() uint16 {
	if len(c.SupportedVersions) == 0 {
		return c.LegacyVersion
	}
	var best uint16
	for _, v := range c.SupportedVersions {
		if !isGREASE(v) && v > best {
			best = v
		}
	}
	return best
}

// ServerHello is what a ServerHello or HelloRetryRequest shows in plaintext.
type ServerHello struct {
	LegacyVersion uint16
	// Version is the negotiated version: supported_versions when present
	// (TLS 1.3), else LegacyVersion.
	Version           uint16
	Random            [32]byte
	SessionID         []byte
	CipherSuite       uint16
	CompressionMethod uint8
	Extensions        []uint16
	// ALPN is the selected protocol when the ServerHello carries it (TLS 1.2
	// and older; TLS 1.3 sends it encrypted in EncryptedExtensions).
	ALPN string
	// KeyShareGroup is the group of the server's key share, or for a
	// HelloRetryRequest the group the server asks for.
	KeyShareGroup       uint16
	IsHelloRetryRequest bool
}

// Compact returns a copy without what is of no use once the handshake is
// over (random, session ID, extension list), for a connection that may
// stay open for hours: the versions, the cipher suite, ALPN, the key
// share group and whether it was a HelloRetryRequest stay.
func (s *ServerHello) Compact() *ServerHello {
	if s == nil {
		return nil
	}
	return &ServerHello{
		LegacyVersion:       s.LegacyVersion,
		Version:             s.Version,
		CipherSuite:         s.CipherSuite,
		CompressionMethod:   s.CompressionMethod,
		ALPN:                s.ALPN,
		KeyShareGroup:       s.KeyShareGroup,
		IsHelloRetryRequest: s.IsHelloRetryRequest,
	}
}

// isGREASE reports whether v is one of the reserved GREASE values 0x?A?A
// (RFC 8701) that clients sprinkle into lists.
func isGREASE(v uint16) bool { return v&0x0f0f == 0x0a0a && v>>8 == v&0xff }

// ParseClientHello parses a complete ClientHello handshake message, including
// its four-byte handshake header.
func ParseClientHello(msg []byte) (*ClientHello, error) {
	body, err := handshakeBody(msg, HandshakeClientHello)
	if err != nil {
		return nil, err
	}
	var ch ClientHello
	if !ch.unmarshal(body) {
		return nil, fmt.Errorf("%w: ClientHello of %d bytes", ErrMalformed, len(msg))
	}
	return &ch, nil
}

// ParseServerHello parses a complete ServerHello (or HelloRetryRequest)
// handshake message, including its four-byte handshake header.
func ParseServerHello(msg []byte) (*ServerHello, error) {
	body, err := handshakeBody(msg, HandshakeServerHello)
	if err != nil {
		return nil, err
	}
	var sh ServerHello
	if !sh.unmarshal(body) {
		return nil, fmt.Errorf("%w: ServerHello of %d bytes", ErrMalformed, len(msg))
	}
	return &sh, nil
}

// handshakeBody checks the handshake header of msg and returns the body.
func handshakeBody(msg []byte, want uint8) (cryptobyte.String, error) {
	s := cryptobyte.String(msg)
	var typ uint8
	var body cryptobyte.String
	if !s.ReadUint8(&typ) || !s.ReadUint24LengthPrefixed(&body) || !s.Empty() {
		return nil, fmt.Errorf("%w: handshake header of a %d-byte message does not match its length", ErrMalformed, len(msg))
	}
	if typ != want {
		return nil, fmt.Errorf("%w: handshake type %s, want %s", ErrUnexpected, HandshakeName(typ), HandshakeName(want))
	}
	return body, nil
}

// unmarshal reads a ClientHello body (after the handshake header) the way
// crypto/tls does, but records rather than rejects what a TLS stack would
// refuse on policy grounds (a trailing dot in the SNI, duplicate extensions):
// an inspector reports what was sent.
func (c *ClientHello) unmarshal(s cryptobyte.String) bool {
	var random, sessionID, compression []byte
	var suites cryptobyte.String
	if !s.ReadUint16(&c.LegacyVersion) || !s.ReadBytes(&random, 32) ||
		!s.ReadUint8LengthPrefixed((*cryptobyte.String)(&sessionID)) ||
		!s.ReadUint16LengthPrefixed(&suites) || len(suites)%2 != 0 ||
		!s.ReadUint8LengthPrefixed((*cryptobyte.String)(&compression)) {
		return false
	}
	copy(c.Random[:], random)
	c.SessionID = bytes.Clone(sessionID)
	c.CompressionMethods = bytes.Clone(compression)
	c.CipherSuites = readUint16List(suites)
	if s.Empty() {
		// Extensions are optional (RFC 5246, Section 7.4.1.2).
		return true
	}
	var exts cryptobyte.String
	if !s.ReadUint16LengthPrefixed(&exts) || !s.Empty() {
		return false
	}
	for !exts.Empty() {
		var typ uint16
		var data cryptobyte.String
		if !exts.ReadUint16(&typ) || !exts.ReadUint16LengthPrefixed(&data) {
			return false
		}
		c.Extensions = append(c.Extensions, typ)
		if !c.unmarshalExtension(typ, data) {
			return false
		}
	}
	return true
}

// unmarshalExtension reads one ClientHello extension; every extension it
// understands must be consumed exactly.
func (c *ClientHello) unmarshalExtension(typ uint16, data cryptobyte.String) bool {
	switch typ {
	case extServerName:
		// RFC 6066, Section 3.
		var names cryptobyte.String
		if !data.ReadUint16LengthPrefixed(&names) || names.Empty() {
			return false
		}
		for !names.Empty() {
			var nameType uint8
			var name cryptobyte.String
			if !names.ReadUint8(&nameType) || !names.ReadUint16LengthPrefixed(&name) || name.Empty() {
				return false
			}
			if nameType == 0 && c.ServerName == "" {
				c.ServerName = string(name)
			}
		}
	case extSupportedGroups:
		var list cryptobyte.String
		if !data.ReadUint16LengthPrefixed(&list) || len(list)%2 != 0 {
			return false
		}
		c.SupportedGroups = readUint16List(list)
	case extSignatureAlgorithms:
		var list cryptobyte.String
		if !data.ReadUint16LengthPrefixed(&list) || len(list)%2 != 0 {
			return false
		}
		c.SignatureAlgorithms = readUint16List(list)
	case extALPN:
		// RFC 7301, Section 3.1.
		var list cryptobyte.String
		if !data.ReadUint16LengthPrefixed(&list) || list.Empty() {
			return false
		}
		for !list.Empty() {
			var proto cryptobyte.String
			if !list.ReadUint8LengthPrefixed(&proto) || proto.Empty() {
				return false
			}
			c.ALPN = append(c.ALPN, string(proto))
		}
	case extSupportedVersions:
		// RFC 8446, Section 4.2.1.
		var list cryptobyte.String
		if !data.ReadUint8LengthPrefixed(&list) || list.Empty() || len(list)%2 != 0 {
			return false
		}
		c.SupportedVersions = readUint16List(list)
	case extKeyShare:
		// RFC 8446, Section 4.2.8.
		var shares cryptobyte.String
		if !data.ReadUint16LengthPrefixed(&shares) {
			return false
		}
		for !shares.Empty() {
			var group uint16
			var key cryptobyte.String
			if !shares.ReadUint16(&group) || !shares.ReadUint16LengthPrefixed(&key) || key.Empty() {
				return false
			}
			c.KeyShareGroups = append(c.KeyShareGroups, group)
		}
	case extEarlyData:
		c.EarlyData = true
	case extPreSharedKey:
		// The content (identities and binders) says nothing ccproxy uses.
		c.PreSharedKey = true
		return true
	default:
		return true
	}
	return data.Empty()
}

// unmarshal reads a ServerHello body (after the handshake header).
func (h *ServerHello) unmarshal(s cryptobyte.String) bool {
	var random, sessionID []byte
	if !s.ReadUint16(&h.LegacyVersion) || !s.ReadBytes(&random, 32) ||
		!s.ReadUint8LengthPrefixed((*cryptobyte.String)(&sessionID)) ||
		!s.ReadUint16(&h.CipherSuite) || !s.ReadUint8(&h.CompressionMethod) {
		return false
	}
	copy(h.Random[:], random)
	h.SessionID = bytes.Clone(sessionID)
	h.IsHelloRetryRequest = h.Random == helloRetryRequestRandom
	h.Version = h.LegacyVersion
	if s.Empty() {
		return true
	}
	var exts cryptobyte.String
	if !s.ReadUint16LengthPrefixed(&exts) || !s.Empty() {
		return false
	}
	for !exts.Empty() {
		var typ uint16
		var data cryptobyte.String
		if !exts.ReadUint16(&typ) || !exts.ReadUint16LengthPrefixed(&data) {
			return false
		}
		h.Extensions = append(h.Extensions, typ)
		switch typ {
		case extALPN:
			// Exactly one protocol (RFC 7301, Section 3.1).
			var list, proto cryptobyte.String
			if !data.ReadUint16LengthPrefixed(&list) ||
				!list.ReadUint8LengthPrefixed(&proto) || proto.Empty() || !list.Empty() {
				return false
			}
			h.ALPN = string(proto)
		case extSupportedVersions:
			if !data.ReadUint16(&h.Version) {
				return false
			}
		case extKeyShare:
			// A HelloRetryRequest names only the group; a ServerHello carries
			// the group and the key (RFC 8446, Section 4.2.8).
			if !data.ReadUint16(&h.KeyShareGroup) {
				return false
			}
			if !h.IsHelloRetryRequest {
				var key cryptobyte.String
				if !data.ReadUint16LengthPrefixed(&key) || key.Empty() {
					return false
				}
			}
		default:
			continue
		}
		if !data.Empty() {
			return false
		}
	}
	return true
}

// parseCertificateList reads a TLS 1.2 Certificate body (RFC 5246, Section
// 7.4.2) and returns copies of the DER certificates, leaf first.
func parseCertificateList(s cryptobyte.String) ([][]byte, bool) {
	var list cryptobyte.String
	if !s.ReadUint24LengthPrefixed(&list) || !s.Empty() {
		return nil, false
	}
	// One copy for all certificates; the event owns it.
	backing := bytes.Clone([]byte(list))
	list = backing
	var certs [][]byte
	for !list.Empty() {
		var cert cryptobyte.String
		if !list.ReadUint24LengthPrefixed(&cert) || cert.Empty() {
			return nil, false
		}
		certs = append(certs, cert[:len(cert):len(cert)])
	}
	return certs, true
}

// parseCertificateRequest reads a TLS 1.0–1.2 CertificateRequest body (RFC
// 5246, Section 7.4.4) and returns copies of the acceptable CA names (DER
// distinguished names). withSigAlgs is true for TLS 1.2, whose request also
// lists signature algorithms.
func parseCertificateRequest(s cryptobyte.String, withSigAlgs bool) ([][]byte, bool) {
	var certTypes, sigAlgs, cas cryptobyte.String
	if !s.ReadUint8LengthPrefixed(&certTypes) || certTypes.Empty() {
		return nil, false
	}
	if withSigAlgs && (!s.ReadUint16LengthPrefixed(&sigAlgs) || sigAlgs.Empty() || len(sigAlgs)%2 != 0) {
		return nil, false
	}
	if !s.ReadUint16LengthPrefixed(&cas) || !s.Empty() {
		return nil, false
	}
	backing := bytes.Clone([]byte(cas))
	cas = backing
	names := [][]byte{}
	for !cas.Empty() {
		var name cryptobyte.String
		if !cas.ReadUint16LengthPrefixed(&name) || name.Empty() {
			return nil, false
		}
		names = append(names, name[:len(name):len(name)])
	}
	return names, true
}

// readUint16List decodes a list of big-endian uint16 of even length.
func readUint16List(s cryptobyte.String) []uint16 {
	out := make([]uint16, 0, len(s)/2)
	for !s.Empty() {
		var v uint16
		if !s.ReadUint16(&v) {
			break
		}
		out = append(out, v)
	}
	return out
}
