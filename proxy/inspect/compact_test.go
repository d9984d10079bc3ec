package inspect

import (
	"slices"
	"testing"
)

func TestClientHelloCompact(t *testing.T) {
	full := &ClientHello{
		LegacyVersion: 0x0303, Random: [32]byte{1}, SessionID: make([]byte, 32),
		CipherSuites: []uint16{0x1301, 0x1302}, CompressionMethods: []uint8{0}, Extensions: []uint16{0, 16, 43},
		ServerName: "localhost", ALPN: []string{"atls:v1:nonce:00", "h2"},
		SupportedVersions: []uint16{0x0304, 0x0303}, SupportedGroups: []uint16{29}, KeyShareGroups: []uint16{29},
		SignatureAlgorithms: []uint16{0x0403}, EarlyData: true, PreSharedKey: true,
	}
	c := full.Compact()
	if c.ServerName != full.ServerName || !slices.Equal(c.ALPN, full.ALPN) || c.LegacyVersion != full.LegacyVersion ||
		!slices.Equal(c.SupportedVersions, full.SupportedVersions) || c.MaxVersion() != full.MaxVersion() {
		t.Errorf("compact %+v lost what the root span or a probe needs", c)
	}
	if c.SessionID != nil || c.CipherSuites != nil || c.Extensions != nil || c.SupportedGroups != nil ||
		c.KeyShareGroups != nil || c.SignatureAlgorithms != nil || c.Random != [32]byte{} {
		t.Errorf("compact %+v kept what nothing needs after the handshake", c)
	}
	if (*ClientHello)(nil).Compact() != nil {
		t.Error("a nil hello compacts to non-nil")
	}
	var cls Classifier
	if cls.CompactHello() != nil || cls.HelloDone() {
		t.Error("a classifier without a hello has one after CompactHello")
	}
}

func TestServerHelloCompact(t *testing.T) {
	full := &ServerHello{
		LegacyVersion: 0x0303, Version: 0x0304, Random: [32]byte{1}, SessionID: make([]byte, 32),
		CipherSuite: 0x1301, Extensions: []uint16{43, 51}, ALPN: "h2", KeyShareGroup: 29, IsHelloRetryRequest: true,
	}
	c := full.Compact()
	want := *full
	want.Random, want.SessionID, want.Extensions = [32]byte{}, nil, nil
	if c == full || c.LegacyVersion != want.LegacyVersion || c.Version != want.Version || c.CipherSuite != want.CipherSuite ||
		c.ALPN != want.ALPN || c.KeyShareGroup != want.KeyShareGroup || c.IsHelloRetryRequest != want.IsHelloRetryRequest ||
		c.Random != want.Random || c.SessionID != nil || c.Extensions != nil {
		t.Errorf("compact %+v, want %+v", c, want)
	}
	if (*ServerHello)(nil).Compact() != nil {
		t.Error("a nil hello compacts to non-nil")
	}
	cls := Classifier{serverHi: full}
	cls.CompactServerHello()
	if f := cls.Facts(); f.ServerHello == full || f.Version != 0x0304 || f.ServerHello.CipherSuite != 0x1301 {
		t.Errorf("facts after CompactServerHello: %+v", f)
	}
}
