package inspect

import (
	"errors"
	"reflect"
	"slices"
	"testing"

	"golang.org/x/crypto/cryptobyte"
)

func TestNames(t *testing.T) {
	tests := []struct{ got, want string }{
		{VersionName(0x0304), "1.3"},
		{VersionName(0x0303), "1.2"},
		{VersionName(0x0302), "1.1"},
		{VersionName(0x0301), "1.0"},
		{VersionName(0x0300), "3"},
		{VersionName(0x7f1c), "0x7f1c"},
		{AlertName(80), "internal_error"},
		{AlertName(42), "bad_certificate"},
		{AlertName(0), "close_notify"},
		{AlertName(116), "certificate_required"},
		{AlertName(255), "alert(255)"},
		{HandshakeName(11), "certificate"},
		{HandshakeName(99), "handshake(99)"},
		{KindClientHello.String(), "client_hello"},
		{KindParseError.String(), "parse_error"},
		{EventKind(0).String(), "kind(0)"},
		{EventKind(200).String(), "kind(200)"},
		{RecordApplicationData.String(), "application_data"},
		{RecordType(24).String(), "record_type(24)"},
		{ServerToClient.String(), "server_to_client"},
		{Alert{Level: 1, Description: 0}.String(), "warning close_notify (0)"},
		{Alert{Level: 7, Description: 40}.String(), "level(7) handshake_failure (40)"},
	}
	for _, tc := range tests {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}

func TestGREASE(t *testing.T) {
	for v, want := range map[uint16]bool{0x0a0a: true, 0x3a3a: true, 0xfafa: true, 0x0a1a: false, 0x0304: false, 0x1a0a: false} {
		if isGREASE(v) != want {
			t.Errorf("isGREASE(%#04x) = %v", v, !want)
		}
	}
}

// helloBuilder writes a ClientHello or ServerHello with cryptobyte, the way
// crypto/tls marshals them.
func buildHello(typ uint8, fixed func(b *cryptobyte.Builder), exts map[uint16][]byte, order []uint16) []byte {
	var b cryptobyte.Builder
	b.AddUint8(typ)
	b.AddUint24LengthPrefixed(func(b *cryptobyte.Builder) {
		fixed(b)
		if order == nil {
			return
		}
		b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
			for _, e := range order {
				b.AddUint16(e)
				b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(exts[e]) })
			}
		})
	})
	return b.BytesOrPanic()
}

func u16s(vs ...uint16) []byte {
	var b cryptobyte.Builder
	for _, v := range vs {
		b.AddUint16(v)
	}
	return b.BytesOrPanic()
}

func prefixed16(body []byte) []byte {
	var b cryptobyte.Builder
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(body) })
	return b.BytesOrPanic()
}

func clientFixed(b *cryptobyte.Builder) {
	b.AddUint16(0x0303)
	b.AddBytes(make([]byte, 32))
	b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes([]byte{9, 9}) })
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(u16s(0x1a1a, 0x1301, 0xc02b)) })
	b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddUint8(0) })
}

func TestParseClientHello(t *testing.T) {
	sni := func(entries ...[]byte) []byte {
		var b cryptobyte.Builder
		b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
			for _, e := range entries {
				b.AddBytes(e)
			}
		})
		return b.BytesOrPanic()
	}
	hostName := func(typ uint8, name string) []byte {
		var b cryptobyte.Builder
		b.AddUint8(typ)
		b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes([]byte(name)) })
		return b.BytesOrPanic()
	}
	alpn := prefixed16([]byte("\x0eatls:v1:nonce:\x02h2"))
	exts := map[uint16][]byte{
		extServerName:          sni(hostName(1, "other-type"), hostName(0, "coordinator."), hostName(0, "second")),
		extALPN:                alpn,
		extSupportedVersions:   {6, 0x3a, 0x3a, 3, 4, 3, 3},
		extSupportedGroups:     prefixed16(u16s(0x11ec, 29, 23)),
		extSignatureAlgorithms: prefixed16(u16s(0x0403, 0x0804)),
		extKeyShare:            prefixed16(append(append(u16s(29), prefixed16([]byte{1, 2, 3})...), append(u16s(23), prefixed16([]byte{4})...)...)),
		extEarlyData:           nil,
		0xff01:                 {0},             // renegotiation_info: skipped
		extPreSharedKey:        {0, 1, 2, 3, 4}, // content not parsed
	}
	order := []uint16{0xff01, extServerName, extALPN, extSupportedVersions, extSupportedGroups, extSignatureAlgorithms, extKeyShare, extEarlyData, extPreSharedKey}
	ch, err := ParseClientHello(buildHello(HandshakeClientHello, clientFixed, exts, order))
	if err != nil {
		t.Fatal(err)
	}
	want := &ClientHello{
		LegacyVersion:       0x0303,
		SessionID:           []byte{9, 9},
		CipherSuites:        []uint16{0x1a1a, 0x1301, 0xc02b},
		CompressionMethods:  []uint8{0},
		Extensions:          order,
		ServerName:          "coordinator.", // as sent, the first host_name
		ALPN:                []string{"atls:v1:nonce:", "h2"},
		SupportedVersions:   []uint16{0x3a3a, 0x0304, 0x0303},
		SupportedGroups:     []uint16{0x11ec, 29, 23},
		KeyShareGroups:      []uint16{29, 23},
		SignatureAlgorithms: []uint16{0x0403, 0x0804},
		EarlyData:           true,
		PreSharedKey:        true,
	}
	if !reflect.DeepEqual(ch, want) {
		t.Errorf("got  %+v\nwant %+v", ch, want)
	}
	if ch.MaxVersion() != 0x0304 {
		t.Errorf("MaxVersion %#x", ch.MaxVersion())
	}
	if (&ClientHello{LegacyVersion: 0x0301}).MaxVersion() != 0x0301 {
		t.Error("MaxVersion without supported_versions is not the legacy version")
	}

	bad := []struct {
		name string
		msg  []byte
		want error
	}{
		{"not a ClientHello", buildHello(HandshakeServerHello, clientFixed, nil, nil), ErrUnexpected},
		{"length mismatch", append(buildHello(HandshakeClientHello, clientFixed, nil, nil), 0), ErrMalformed},
		{"empty", nil, ErrMalformed},
		{"empty server_name list", buildHello(1, clientFixed, map[uint16][]byte{0: {0, 0}}, []uint16{0}), ErrMalformed},
		{"empty host name", buildHello(1, clientFixed, map[uint16][]byte{0: sni(hostName(0, ""))}, []uint16{0}), ErrMalformed},
		{"odd supported_versions", buildHello(1, clientFixed, map[uint16][]byte{43: {3, 3, 4, 3}}, []uint16{43}), ErrMalformed},
		{"trailing byte in ALPN", buildHello(1, clientFixed, map[uint16][]byte{16: append(alpn, 0)}, []uint16{16}), ErrMalformed},
		{"empty key share", buildHello(1, clientFixed, map[uint16][]byte{51: prefixed16(append(u16s(29), 0, 0))}, []uint16{51}), ErrMalformed},
	}
	for _, tc := range bad {
		if ch, err := ParseClientHello(tc.msg); !errors.Is(err, tc.want) || ch != nil {
			t.Errorf("%s: %v, %v; want %v", tc.name, ch, err, tc.want)
		}
	}
}

func serverFixed(random []byte) func(b *cryptobyte.Builder) {
	return func(b *cryptobyte.Builder) {
		b.AddUint16(0x0303)
		b.AddBytes(random)
		b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) {})
		b.AddUint16(0xc02b)
		b.AddUint8(0)
	}
}

func TestParseServerHello(t *testing.T) {
	random := make([]byte, 32)
	tests := []struct {
		name string
		msg  []byte
		want *ServerHello
	}{{
		name: "tls12 with alpn",
		msg:  buildHello(2, serverFixed(random), map[uint16][]byte{16: prefixed16([]byte("\x02h2")), 0xff01: {0}}, []uint16{0xff01, 16}),
		want: &ServerHello{LegacyVersion: 0x0303, Version: 0x0303, SessionID: []byte{}, CipherSuite: 0xc02b, Extensions: []uint16{0xff01, 16}, ALPN: "h2"},
	}, {
		name: "no extensions",
		msg:  buildHello(2, serverFixed(random), nil, nil),
		want: &ServerHello{LegacyVersion: 0x0303, Version: 0x0303, SessionID: []byte{}, CipherSuite: 0xc02b},
	}, {
		name: "hello retry request",
		msg:  buildHello(2, serverFixed(helloRetryRequestRandom[:]), map[uint16][]byte{43: {3, 4}, 51: {0, 23}}, []uint16{43, 51}),
		want: &ServerHello{LegacyVersion: 0x0303, Version: 0x0304, Random: helloRetryRequestRandom, SessionID: []byte{}, CipherSuite: 0xc02b, Extensions: []uint16{43, 51}, KeyShareGroup: 23, IsHelloRetryRequest: true},
	}}
	for _, tc := range tests {
		got, err := ParseServerHello(tc.msg)
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: %+v, %v\nwant %+v", tc.name, got, err, tc.want)
		}
	}
	for name, msg := range map[string][]byte{
		"two alpn protocols":        buildHello(2, serverFixed(random), map[uint16][]byte{16: prefixed16([]byte("\x02h2\x02h3"))}, []uint16{16}),
		"key share without the key": buildHello(2, serverFixed(random), map[uint16][]byte{51: {0, 23}}, []uint16{51}),
		"short supported_versions":  buildHello(2, serverFixed(random), map[uint16][]byte{43: {3}}, []uint16{43}),
	} {
		if _, err := ParseServerHello(msg); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v, want ErrMalformed", name, err)
		}
	}
}

// TestCertificateRequestVersions: TLS 1.2 added signature algorithms to the
// CertificateRequest; the server direction reads it per its own ServerHello.
func TestCertificateRequestVersions(t *testing.T) {
	random := make([]byte, 32)
	tls10 := func(b *cryptobyte.Builder) {
		b.AddUint16(0x0301)
		b.AddBytes(random)
		b.AddUint8(0)
		b.AddUint16(0xc013)
		b.AddUint8(0)
	}
	caNames := append(prefixed16([]byte("CA one")), prefixed16([]byte("CA two"))...)
	req10 := handshakeMsg(HandshakeCertificateRequest, append([]byte{1, 64}, prefixed16(caNames)...))
	req12 := handshakeMsg(HandshakeCertificateRequest, slices.Concat([]byte{1, 64}, prefixed16(u16s(0x0403)), prefixed16(caNames)))
	for name, stream := range map[string][]byte{
		"tls10": record(RecordHandshake, slices.Concat(buildHello(2, tls10, nil, nil), req10)),
		"tls12": record(RecordHandshake, slices.Concat(buildHello(2, serverFixed(random), nil, nil), req12)),
	} {
		evs, _ := feedAll(ServerToClient, Config{}, stream)
		if len(evs) != 2 || evs[1].Kind != KindCertificateRequest {
			t.Fatalf("%s: %v", name, evs)
		}
		if got := evs[1].CertificateRequestCAs; len(got) != 2 || string(got[0]) != "CA one" || string(got[1]) != "CA two" {
			t.Errorf("%s: CAs %q", name, got)
		}
	}
}
