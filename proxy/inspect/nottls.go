package inspect

import (
	"bytes"
	"fmt"
	"strconv"
)

// notTLSPrefix is how many bytes of a non-TLS stream a NotTLSError keeps.
const notTLSPrefix = 16

// NotTLSError says why the start of a stream is not a TLS record.
type NotTLSError struct {
	// Reason names the header field that is wrong, with its value.
	Reason string
	// FirstBytes are the first bytes of the stream: the ones the decision
	// was made on and whatever else arrived in the same write, up to 16.
	FirstBytes []byte
}

func (e *NotTLSError) Error() string {
	msg := fmt.Sprintf("not TLS: %s; first bytes %x", e.Reason, e.FirstBytes)
	if printable(e.FirstBytes) {
		msg += " " + strconv.Quote(string(e.FirstBytes))
	}
	if l := e.LooksLike(); l != "" {
		msg += ", " + l
	}
	return msg
}

// LooksLike guesses what protocol the first bytes belong to, e.g. "looks like
// an HTTP request", or returns "" when nothing matches.
func (e *NotTLSError) LooksLike() string {
	b := e.FirstBytes
	switch {
	case bytes.HasPrefix(b, []byte("HTTP/")):
		return "looks like an HTTP response"
	case bytes.HasPrefix(b, []byte("PRI * HTTP/2")):
		return "looks like a cleartext HTTP/2 (h2c) preface, e.g. gRPC without TLS"
	case bytes.HasPrefix(b, []byte("PROXY ")),
		bytes.HasPrefix(b, []byte("\r\n\r\n\x00\r\nQUIT\n")):
		return "looks like a PROXY protocol header"
	case bytes.HasPrefix(b, []byte("SSH-")):
		return "looks like an SSH banner"
	case len(b) >= 3 && b[0]&0x80 != 0 && b[2] == 1:
		return "looks like an SSLv2-compatible ClientHello"
	}
	for _, m := range []string{"GET ", "POST ", "HEAD ", "PUT ", "DELETE ", "OPTIONS ", "PATCH ", "CONNECT ", "TRACE "} {
		if bytes.HasPrefix(b, []byte(m)) {
			return "looks like an HTTP request"
		}
	}
	return ""
}

// printable reports whether b is worth quoting as text next to its hex.
func printable(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if (c < 0x20 || c > 0x7e) && c != '\r' && c != '\n' && c != '\t' {
			return false
		}
	}
	return true
}
