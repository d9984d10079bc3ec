package wire

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"strings"
	"testing"
)

func TestMsgRoundTrip(t *testing.T) {
	for _, m := range []Msg{
		{Op: OpTLS},
		{Op: OpRaw, Arg: 1},
		{Op: OpUpload, Arg: 1 << 30},
		{Op: OpDownload, Arg: 1<<63 - 1},
		{Op: OpEcho},
		{Op: OpHold},
	} {
		var buf bytes.Buffer
		if err := Write(&buf, m); err != nil {
			t.Fatal(err)
		}
		if buf.Len() != MsgSize {
			t.Fatalf("%+v: wrote %d bytes, want %d", m, buf.Len(), MsgSize)
		}
		got, err := Read(&buf)
		if err != nil {
			t.Fatalf("%+v: %v", m, err)
		}
		if got != m {
			t.Errorf("round trip: got %+v, want %+v", got, m)
		}
	}
}

func TestParseRejects(t *testing.T) {
	valid := Msg{Op: OpUpload, Arg: 5}.Marshal()
	tests := []struct {
		name string
		in   func() []byte
		want string
	}{
		{"short", func() []byte { return valid[:MsgSize-1] }, "15 bytes"},
		{"unknown op", func() []byte { b := valid; b[0] = 'X'; return b[:] }, "unknown operation"},
		{"reserved byte", func() []byte { b := valid; b[3] = 1; return b[:] }, "reserved byte 3"},
		{"negative", func() []byte { b := Msg{Op: OpDownload, Arg: -1}.Marshal(); return b[:] }, "negative"},
		{"TLS record", func() []byte { return []byte("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03abcde") }, "unknown operation"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(tt.in())
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Parse: err %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestTLSConfigs(t *testing.T) {
	srv, err := ServerTLSConfig()
	if err != nil {
		t.Fatal(err)
	}
	if srv.MinVersion != tls.VersionTLS13 || !srv.SessionTicketsDisabled {
		t.Errorf("server: MinVersion %x, tickets disabled %v; want TLS 1.3 and no tickets", srv.MinVersion, srv.SessionTicketsDisabled)
	}
	cert, err := x509.ParseCertificate(srv.Certificates[0].Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	if cert.Subject.CommonName != "Contrast" || cert.NotAfter.Sub(cert.NotBefore).Hours() != 4 {
		t.Errorf("certificate: CN %q, validity %s; want Contrast, 4h", cert.Subject.CommonName, cert.NotAfter.Sub(cert.NotBefore))
	}
	cli := ClientTLSConfig([]byte{0xab, 0xcd})
	if cli.NextProtos[0] != "atls:v1:nonce:abcd" || cli.NextProtos[1] != "h2" {
		t.Errorf("client ALPN %q, want the atls nonce entry then h2", cli.NextProtos)
	}
}

func FuzzParse(f *testing.F) {
	for _, m := range []Msg{{Op: OpTLS}, {Op: OpUpload, Arg: 1 << 20}, {Op: OpHold}} {
		b := m.Marshal()
		f.Add(b[:])
	}
	f.Add([]byte("GET / HTTP/1.1\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Parse(b)
		if err != nil {
			return
		}
		// Whatever parses re-encodes to the same bytes.
		if got := m.Marshal(); !bytes.Equal(got[:], b) {
			t.Fatalf("Parse(%x) = %+v, which marshals to %x", b, m, got)
		}
		if m.Arg < 0 {
			t.Fatalf("negative argument accepted: %+v", m)
		}
	})
}
