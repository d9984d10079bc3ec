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
