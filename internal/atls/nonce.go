package atls

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// NonceSize is the length of the client and server nonces Contrast uses
// (contrastcrypto.RNGLengthDefault).
const NonceSize = 32

// Where NonceFromHello found the client nonce; the values are the contract's
// `atls.nonce_source` attribute.
const (
	SourceALPN = "alpn"
	SourceSNI  = "sni"
)

// alpnVersion is the only aTLS ALPN version Contrast speaks (preferredAtlsVersion).
const alpnVersion = "v1"

// alpnPrefix is the ALPN entry prefix for alpnVersion; Contrast formats it from
// `atls:%s:nonce:`.
const alpnPrefix = "atls:" + alpnVersion + ":nonce:"

var (
	// ErrNoNonce means the ClientHello carries neither an `atls:` ALPN entry nor
	// an SNI. Same text as Contrast's errNoNonce.
	ErrNoNonce = errors.New("no nonce in supported protocols or SNI")
	// ErrUnsupportedVersion means an `atls:` ALPN entry names a version the
	// server does not speak. Same text as Contrast's errVersionMismatch, which
	// users see in the Coordinator log.
	ErrUnsupportedVersion = errors.New("proto refers to an unsupported atls version")
)

// NewNonce returns a fresh random client or server nonce.
func NewNonce() ([]byte, error) {
	nonce := make([]byte, NonceSize)
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("generating nonce: %w", err)
	}
	return nonce, nil
}

// ALPNEntry is the ALPN protocol name a newer Contrast CLI offers (before h2)
// to carry its nonce: `atls:v1:nonce:<lowercase hex>`.
func ALPNEntry(nonce []byte) string {
	return alpnPrefix + hex.EncodeToString(nonce)
}

// SNIEntry is the server name an older Contrast CLI sends to carry its nonce:
// the nonce in standard base64.
func SNIEntry(nonce []byte) string {
	return base64.StdEncoding.EncodeToString(nonce)
}

// NonceFromHello extracts the client nonce from a ClientHello's server name
// and ALPN list exactly as a current Coordinator does (Contrast's getNonce):
// the first ALPN entry starting with "atls" wins, and an entry of another
// version is an error wrapping ErrUnsupportedVersion; only without any such
// entry is the SNI read as standard base64. source is SourceALPN or SourceSNI
// (where the nonce came from, or where decoding failed); it is empty only with
// ErrNoNonce. The error texts are Contrast's, so a relay can quote them.
//
// The function is pure; the nonce length is not checked (Contrast does not
// either: a short nonce simply fails validation on the client).
func NonceFromHello(serverName string, alpn []string) (nonce []byte, source string, err error) {
	for _, proto := range alpn {
		if !strings.HasPrefix(proto, "atls") {
			continue
		}
		nonceHex, ok := strings.CutPrefix(proto, alpnPrefix)
		if !ok {
			return nil, SourceALPN, fmt.Errorf("decoding nonce from SupportedProtos: %w: %q", ErrUnsupportedVersion, proto)
		}
		nonce, err := hex.DecodeString(nonceHex)
		if err != nil {
			return nil, SourceALPN, fmt.Errorf("decoding nonce from SupportedProtos: decoding nonce: %w", err)
		}
		return nonce, SourceALPN, nil
	}
	if serverName == "" {
		return nil, "", ErrNoNonce
	}
	nonce, err = base64.StdEncoding.DecodeString(serverName)
	if err != nil {
		return nil, SourceSNI, fmt.Errorf("decoding nonce from SNI: %w", err)
	}
	return nonce, SourceSNI, nil
}

// NonceFromSNI extracts the client nonce the way an older Coordinator does: it
// ignores ALPN and decodes the SNI as standard base64, returning the decoder's
// error unwrapped. An empty SNI decodes to an empty nonce without error, as it
// did there. A newer CLI's SNI (its dial authority, e.g. "localhost") therefore
// fails here, which is why such a pair fails every handshake.
func NonceFromSNI(serverName string) ([]byte, error) {
	return base64.StdEncoding.DecodeString(serverName)
}
