package inspect

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
)

// collector gathers events from both directions of a Conn.
type collector struct {
	mu     sync.Mutex
	events [2][]Event
}

func (c *collector) sink(ev Event) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.events[ev.Dir] = append(c.events[ev.Dir], ev)
}

// writeSplit feeds b to p in pieces of 1..maxChunk bytes (all of b at once
// when maxChunk is 0). Each piece goes through a scratch buffer that is
// scribbled over after Write returns, so an event that aliased its input
// would show garbage.
func writeSplit(p *Parser, b []byte, rng *rand.Rand, maxChunk int) {
	scratch := make([]byte, len(b))
	for len(b) > 0 {
		n := len(b)
		if maxChunk > 0 {
			n = min(n, 1+rng.IntN(maxChunk))
		}
		piece := scratch[:n]
		copy(piece, b[:n])
		p.Write(piece)
		for i := range piece {
			piece[i] = 0xAA
		}
		b = b[n:]
	}
}

// feedStrategy is one way the relay might hand a capture to the parsers.
type feedStrategy struct {
	name string
	feed func(c2s, s2c *Parser, c *capture, rng *rand.Rand)
}

func parserFor(dir Direction, c2s, s2c *Parser) *Parser {
	if dir == ClientToServer {
		return c2s
	}
	return s2c
}

var feedStrategies = []feedStrategy{
	{"causal/whole", func(c2s, s2c *Parser, c *capture, rng *rand.Rand) {
		for _, ch := range c.chunks {
			writeSplit(parserFor(ch.dir, c2s, s2c), ch.b, rng, 0)
		}
	}},
	{"causal/bytes", func(c2s, s2c *Parser, c *capture, rng *rand.Rand) {
		for _, ch := range c.chunks {
			writeSplit(parserFor(ch.dir, c2s, s2c), ch.b, rng, 1)
		}
	}},
	{"causal/random", func(c2s, s2c *Parser, c *capture, rng *rand.Rand) {
		for _, ch := range c.chunks {
			writeSplit(parserFor(ch.dir, c2s, s2c), ch.b, rng, 300)
		}
	}},
	// The client's answer overtakes the server's hello: the race the relay
	// has between forwarding a chunk and parsing it.
	{"client-first/random", func(c2s, s2c *Parser, c *capture, rng *rand.Rand) {
		writeSplit(c2s, c.stream(ClientToServer), rng, 97)
		writeSplit(s2c, c.stream(ServerToClient), rng, 97)
	}},
	{"server-first/whole", func(c2s, s2c *Parser, c *capture, rng *rand.Rand) {
		writeSplit(s2c, c.stream(ServerToClient), rng, 0)
		writeSplit(c2s, c.stream(ClientToServer), rng, 0)
	}},
	{"concurrent/random", func(c2s, s2c *Parser, c *capture, rng *rand.Rand) {
		var wg sync.WaitGroup
		seed := rng.Uint64()
		for _, dir := range []Direction{ClientToServer, ServerToClient} {
			wg.Go(func() {
				r := rand.New(rand.NewPCG(seed, uint64(dir)))
				writeSplit(parserFor(dir, c2s, s2c), c.stream(dir), r, 41)
			})
		}
		wg.Wait()
	}},
}

// checkLocated checks that every event points at a record header in its
// stream and that offsets never go back.
func checkLocated(t *testing.T, stream []byte, evs []Event) {
	t.Helper()
	var last int64
	for _, ev := range evs {
		if ev.Kind == KindNotTLS {
			continue
		}
		if ev.Offset < last || ev.Offset+recordHeaderLen > int64(len(stream)) {
			t.Fatalf("%v: offset out of order or range (last %d, stream %d)", ev, last, len(stream))
		}
		last = ev.Offset
		h := stream[ev.Offset:]
		want := RecordHeader{Type: RecordType(h[0]), Version: uint16(h[1])<<8 | uint16(h[2]), Length: uint16(h[3])<<8 | uint16(h[4])}
		if ev.Record != want {
			t.Fatalf("%v: Record %+v, stream has %+v there", ev, ev.Record, want)
		}
	}
}

func kindsOf(evs []Event) []EventKind {
	out := make([]EventKind, len(evs))
	for i, ev := range evs {
		out[i] = ev.Kind
	}
	return out
}

func firstOf(evs []Event, k EventKind) *Event {
	for i := range evs {
		if evs[i].Kind == k {
			return &evs[i]
		}
	}
	return nil
}

func allOf(evs []Event, k EventKind) []Event {
	var out []Event
	for _, ev := range evs {
		if ev.Kind == k {
			out = append(out, ev)
		}
	}
	return out
}

// protectedTail checks that after index i only Record and ApplicationData
// events follow, at least one of them application data.
func protectedTail(t *testing.T, evs []Event, i int) {
	t.Helper()
	sawData := false
	for _, ev := range evs[i:] {
		switch ev.Kind {
		case KindRecord:
		case KindApplicationData:
			sawData = true
		default:
			t.Fatalf("plaintext event %v in the encrypted phase (all: %v)", ev, kindsOf(evs))
		}
	}
	if !sawData {
		t.Fatalf("no application data after index %d: %v", i, kindsOf(evs))
	}
}

func hasExtension(t *testing.T, der []byte) bool {
	t.Helper()
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("certificate from the event does not parse: %v", err)
	}
	for _, e := range cert.Extensions {
		if e.Id.Equal(oidSNPAttestation) {
			return true
		}
	}
	return false
}

func TestRealHandshakes(t *testing.T) {
	nonce := bytes.Repeat([]byte{0xfb, 0xef, 0xff}, 11)[:32] // base64 with '+' and '/'
	atlsALPN := "atls:v1:nonce:" + hex.EncodeToString(nonce)
	serverCert := testCert(t, "Contrast", []byte("attestation document"))
	clientCert := testCert(t, "workload owner", nil)
	// The Coordinator asks for a client certificate and names one CA whose
	// CN is its base64 nonce.
	nonceCA := testCert(t, base64.StdEncoding.EncodeToString(nonce), nil)
	cas := x509.NewCertPool()
	cas.AddCert(nonceCA.Leaf)

	server := func(mod func(*tls.Config)) *tls.Config {
		c := &tls.Config{Certificates: []tls.Certificate{serverCert}, NextProtos: []string{"h2"}}
		if mod != nil {
			mod(c)
		}
		return c
	}
	client := func(mod func(*tls.Config)) *tls.Config {
		c := &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12, ServerName: "localhost", NextProtos: []string{atlsALPN, "h2"}}
		if mod != nil {
			mod(c)
		}
		return c
	}
	rejectCert := func(c *tls.Config) {
		c.VerifyPeerCertificate = func([][]byte, [][]*x509.Certificate) error {
			return errors.New("no valid attestation document certificate extensions found")
		}
	}

	tests := []struct {
		name   string
		server *tls.Config
		client *tls.Config
		check  func(t *testing.T, c *capture, c2s, s2c []Event)
	}{{
		name:   "tls13",
		server: server(nil),
		client: client(nil),
		check: func(t *testing.T, c *capture, c2s, s2c []Event) {
			if c.clientErr != nil {
				t.Fatal(c.clientErr)
			}
			ch := c2s[0].ClientHello
			if c2s[0].Kind != KindClientHello || ch.ServerName != "localhost" || !slices.Equal(ch.ALPN, []string{atlsALPN, "h2"}) {
				t.Fatalf("first client event %v, hello %+v", c2s[0], ch)
			}
			if !slices.Contains(ch.SupportedVersions, tls.VersionTLS13) || ch.MaxVersion() != tls.VersionTLS13 || c2s[0].HandshakeType != HandshakeClientHello {
				t.Errorf("supported versions %x, max %x", ch.SupportedVersions, ch.MaxVersion())
			}
			if !slices.Equal(kindsOf(c2s[:2]), []EventKind{KindClientHello, KindChangeCipherSpec}) {
				t.Fatalf("client kinds %v", kindsOf(c2s))
			}
			protectedTail(t, c2s, 2)
			sh := s2c[0].ServerHello
			if s2c[0].Kind != KindServerHello || sh.Version != tls.VersionTLS13 || sh.CipherSuite != c.state.CipherSuite || sh.ALPN != "" {
				t.Fatalf("first server event %v, hello %+v, state suite %x", s2c[0], sh, c.state.CipherSuite)
			}
			// The server's compatibility CCS comes after the ServerHello:
			// it is reported as a record, like everything encrypted.
			if s2c[1].Kind != KindRecord || s2c[1].Record.Type != RecordChangeCipherSpec {
				t.Fatalf("second server event %v", s2c[1])
			}
			protectedTail(t, s2c, 1)
		},
	}, {
		name:   "tls13 nonce in sni",
		server: server(nil),
		client: client(func(c *tls.Config) {
			c.ServerName = base64.StdEncoding.EncodeToString(nonce)
			c.NextProtos = []string{"h2"}
		}),
		check: func(t *testing.T, c *capture, c2s, s2c []Event) {
			if c.clientErr != nil {
				t.Fatal(c.clientErr)
			}
			ch := c2s[0].ClientHello
			if got, want := ch.ServerName, base64.StdEncoding.EncodeToString(nonce); got != want {
				t.Errorf("SNI %q, want %q", got, want)
			}
			if !slices.Equal(ch.ALPN, []string{"h2"}) {
				t.Errorf("ALPN %q", ch.ALPN)
			}
		},
	}, {
		name: "tls12 certificates",
		server: server(func(c *tls.Config) {
			c.ClientAuth = tls.RequestClientCert
			c.ClientCAs = cas
		}),
		client: client(func(c *tls.Config) {
			c.MaxVersion = tls.VersionTLS12
			// Like the Contrast CLI: present the key whatever CA is asked for.
			c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &clientCert, nil }
		}),
		check: func(t *testing.T, c *capture, c2s, s2c []Event) {
			if c.clientErr != nil {
				t.Fatal(c.clientErr)
			}
			want := []EventKind{KindServerHello, KindCertificate, KindHandshakeMessage, KindCertificateRequest, KindServerHelloDone}
			if got := kindsOf(s2c); len(got) < len(want) || !slices.Equal(got[:len(want)], want) {
				t.Fatalf("server kinds %v, want prefix %v", got, want)
			}
			sh := s2c[0].ServerHello
			if sh.Version != tls.VersionTLS12 || sh.CipherSuite != c.state.CipherSuite || sh.ALPN != "h2" {
				t.Errorf("ServerHello %+v, state suite %x", sh, c.state.CipherSuite)
			}
			if s2c[2].HandshakeType != HandshakeServerKeyExchange {
				t.Errorf("third server message %s", HandshakeName(s2c[2].HandshakeType))
			}
			certs := s2c[1].Certificates
			if len(certs) != 1 || !bytes.Equal(certs[0], serverCert.Certificate[0]) || !hasExtension(t, certs[0]) {
				t.Errorf("server Certificate event does not hold the server's certificate with the attestation extension")
			}
			if cas := s2c[3].CertificateRequestCAs; len(cas) != 1 || !bytes.Equal(cas[0], nonceCA.Leaf.RawSubject) {
				t.Errorf("CertificateRequest CAs %x, want [%x]", cas, nonceCA.Leaf.RawSubject)
			}
			ccs := slices.IndexFunc(s2c, func(ev Event) bool { return ev.Kind == KindChangeCipherSpec })
			if ccs < 0 || s2c[ccs+1].Kind != KindRecord || s2c[ccs+1].Record.Type != RecordHandshake {
				t.Fatalf("server kinds %v: want CCS then the encrypted Finished", kindsOf(s2c))
			}
			protectedTail(t, s2c, ccs+1)

			if ch := c2s[0].ClientHello; ch == nil || ch.ServerName != "localhost" {
				t.Fatalf("first client event %v", c2s[0])
			}
			cc := firstOf(c2s, KindCertificate)
			if cc == nil || len(cc.Certificates) != 1 || !bytes.Equal(cc.Certificates[0], clientCert.Certificate[0]) {
				t.Errorf("client Certificate event %v does not hold the client certificate", cc)
			}
			ccs = slices.IndexFunc(c2s, func(ev Event) bool { return ev.Kind == KindChangeCipherSpec })
			if ccs < 0 || c2s[ccs+1].Kind != KindRecord || c2s[ccs+1].Record.Type != RecordHandshake {
				t.Fatalf("client kinds %v: want CCS then the encrypted Finished", kindsOf(c2s))
			}
			protectedTail(t, c2s, ccs+1)
		},
	}, {
		name:   "hello retry request",
		server: server(func(c *tls.Config) { c.CurvePreferences = []tls.CurveID{tls.CurveP256} }),
		client: client(nil),
		check: func(t *testing.T, c *capture, c2s, s2c []Event) {
			if c.clientErr != nil {
				t.Fatal(c.clientErr)
			}
			if want := []EventKind{KindHelloRetryRequest, KindChangeCipherSpec, KindServerHello}; !slices.Equal(kindsOf(s2c[:3]), want) {
				t.Fatalf("server kinds %v, want prefix %v", kindsOf(s2c), want)
			}
			hrr := s2c[0].ServerHello
			if !hrr.IsHelloRetryRequest || hrr.KeyShareGroup != uint16(tls.CurveP256) || hrr.Version != tls.VersionTLS13 {
				t.Errorf("HelloRetryRequest %+v", hrr)
			}
			if sh := s2c[2].ServerHello; sh.IsHelloRetryRequest || sh.Version != tls.VersionTLS13 || sh.KeyShareGroup != uint16(tls.CurveP256) {
				t.Errorf("ServerHello %+v", sh)
			}
			protectedTail(t, s2c, 3)
			if want := []EventKind{KindClientHello, KindChangeCipherSpec, KindClientHello}; !slices.Equal(kindsOf(c2s[:3]), want) {
				t.Fatalf("client kinds %v, want prefix %v", kindsOf(c2s), want)
			}
			if g := c2s[2].ClientHello.KeyShareGroups; !slices.Equal(g, []uint16{uint16(tls.CurveP256)}) {
				t.Errorf("second ClientHello key shares %v", g)
			}
			if c2s[2].ClientHello.ServerName != "localhost" {
				t.Errorf("second ClientHello SNI %q", c2s[2].ClientHello.ServerName)
			}
			protectedTail(t, c2s, 3)
		},
	}, {
		name: "issuer error alert",
		server: server(func(c *tls.Config) {
			c.Certificates = nil
			c.GetCertificate = func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return nil, errIssuer }
		}),
		client: client(nil),
		check: func(t *testing.T, c *capture, c2s, s2c []Event) {
			if c.clientErr == nil || !strings.Contains(c.clientErr.Error(), "internal error") {
				t.Fatalf("client error %v, want remote internal error", c.clientErr)
			}
			if len(s2c) != 1 || s2c[0].Kind != KindAlert || *s2c[0].Alert != (Alert{Level: AlertLevelFatal, Description: 80}) || s2c[0].Offset != 0 {
				t.Fatalf("server events %v, want one fatal internal_error alert at 0", s2c)
			}
			if got := s2c[0].Alert.String(); got != "fatal internal_error (80)" {
				t.Errorf("alert text %q", got)
			}
			if kindsOf(c2s)[0] != KindClientHello {
				t.Errorf("client kinds %v", kindsOf(c2s))
			}
		},
	}, {
		name:   "tls12 client rejects certificate",
		server: server(nil),
		client: client(func(c *tls.Config) {
			c.MaxVersion = tls.VersionTLS12
			rejectCert(c)
		}),
		check: func(t *testing.T, c *capture, c2s, s2c []Event) {
			if c.clientErr == nil {
				t.Fatal("client accepted the certificate")
			}
			a := firstOf(c2s, KindAlert)
			if a == nil || a.Alert.Description != 42 || !a.Alert.Fatal() {
				t.Fatalf("client events %v, want a plaintext bad_certificate alert", c2s)
			}
			if firstOf(s2c, KindCertificate) == nil {
				t.Errorf("server events %v lack the Certificate", kindsOf(s2c))
			}
		},
	}, {
		name:   "tls13 client rejects certificate",
		server: server(nil),
		client: client(rejectCert),
		check: func(t *testing.T, c *capture, c2s, s2c []Event) {
			if c.clientErr == nil {
				t.Fatal("client accepted the certificate")
			}
			// The alert is encrypted: one protected record of 2 alert
			// bytes, the inner content type and a 16-byte tag.
			if firstOf(c2s, KindAlert) != nil {
				t.Fatalf("plaintext alert reported for an encrypted one: %v", c2s)
			}
			last := c2s[len(c2s)-1]
			if last.Kind != KindApplicationData || last.Record.Length != 2+1+16 {
				t.Fatalf("client events %v, want the encrypted alert last", c2s)
			}
		},
	}}

	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := runHandshake(t, tc.server, tc.client)
			var baseline [2][]Event
			for i, st := range feedStrategies {
				t.Run(st.name, func(t *testing.T) {
					col := &collector{}
					c2s, s2c := NewConn(col.sink)
					st.feed(c2s, s2c, c, rand.New(rand.NewPCG(uint64(i), 7)))
					for _, dir := range []Direction{ClientToServer, ServerToClient} {
						checkLocated(t, c.stream(dir), col.events[dir])
					}
					if i == 0 {
						baseline = col.events
						tc.check(t, c, col.events[ClientToServer], col.events[ServerToClient])
						if c.clientErr == nil && (!c2s.Done() || !s2c.Done()) {
							t.Errorf("Done after a finished handshake with data: c2s %v s2c %v", c2s.Done(), s2c.Done())
						}
						if c.state.Version != 0 && c2s.Version() != c.state.Version {
							t.Errorf("Version() %x, negotiated %x", c2s.Version(), c.state.Version)
						}
						return
					}
					// Every way of splitting and ordering the same bytes
					// must give the same events.
					for _, dir := range []Direction{ClientToServer, ServerToClient} {
						if !reflect.DeepEqual(col.events[dir], baseline[dir]) {
							t.Errorf("%s events differ from %s:\n got %v\nwant %v", dir, feedStrategies[0].name, col.events[dir], baseline[dir])
						}
					}
				})
			}
		})
	}
}

// Synthetic message builders for the tests below.

func record(typ RecordType, body []byte) []byte {
	return append([]byte{byte(typ), 3, 3, byte(len(body) >> 8), byte(len(body))}, body...)
}

func handshakeMsg(typ uint8, body []byte) []byte {
	return append([]byte{typ, byte(len(body) >> 16), byte(len(body) >> 8), byte(len(body))}, body...)
}

// feedAll runs one direction's bytes through a standalone parser.
func feedAll(dir Direction, cfg Config, chunks ...[]byte) ([]Event, *Parser) {
	var evs []Event
	p := cfg.NewParser(dir, func(ev Event) { evs = append(evs, ev) })
	for _, c := range chunks {
		p.Write(c)
	}
	return evs, p
}

func TestNotTLS(t *testing.T) {
	tests := []struct {
		name      string
		dir       Direction
		in        string
		reason    string
		looksLike string
	}{
		{"http request", ClientToServer, "GET / HTTP/1.1\r\nHost: coordinator\r\n\r\n", "first record type 71", "HTTP request"},
		{"http response", ServerToClient, "HTTP/1.1 400 Bad Request\r\n\r\n", "first record type 72", "HTTP response"},
		{"h2c preface", ClientToServer, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "first record type 80", "h2c"},
		{"ssh", ServerToClient, "SSH-2.0-OpenSSH_9.6\r\n", "first record type 83", "SSH"},
		{"proxy protocol", ClientToServer, "PROXY TCP4 10.0.0.1 10.0.0.2 1 2\r\n", "first record type 80", "PROXY protocol"},
		{"sslv2 hello", ClientToServer, "\x80\x2e\x01\x03\x01\x00\x15", "first record type 128", "SSLv2"},
		{"application data first", ServerToClient, "\x17\x03\x03\x00\x05hello", "first record type 23", ""},
		{"bad major version", ClientToServer, "\x16\x04\x01\x00\x05hello", "version major 4", ""},
		{"oversized first record", ServerToClient, "\x16\x03\x03\xff\xff", "length 65535 exceeds 18432", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, split := range []int{0, 1} {
				var chunks [][]byte
				if split == 0 {
					chunks = [][]byte{[]byte(tc.in)}
				} else {
					for i := range len(tc.in) {
						chunks = append(chunks, []byte{tc.in[i]})
					}
				}
				// More input after the verdict must be ignored.
				chunks = append(chunks, record(RecordHandshake, handshakeMsg(1, nil)))
				evs, p := feedAll(tc.dir, Config{}, chunks...)
				if len(evs) != 1 || evs[0].Kind != KindNotTLS || evs[0].Offset != 0 || evs[0].Dir != tc.dir || !p.Done() {
					t.Fatalf("split %d: events %v, done %v", split, evs, p.Done())
				}
				var nt *NotTLSError
				if !errors.As(evs[0].Err, &nt) || !strings.Contains(nt.Reason, tc.reason) {
					t.Fatalf("split %d: error %v, want reason with %q", split, evs[0].Err, tc.reason)
				}
				if split == 0 {
					// Whole: the error quotes the first bytes and guesses.
					want := []byte(tc.in)[:min(len(tc.in), 16)]
					if !bytes.Equal(nt.FirstBytes, want) || !strings.Contains(nt.Error(), hex.EncodeToString(want)) {
						t.Errorf("first bytes %x in %q, want %x", nt.FirstBytes, nt.Error(), want)
					}
					if !strings.Contains(nt.LooksLike(), tc.looksLike) || (tc.looksLike == "") != (nt.LooksLike() == "") {
						t.Errorf("LooksLike %q, want %q", nt.LooksLike(), tc.looksLike)
					}
				}
			}
		})
	}
	// The error text for the classic case reads well.
	evs, _ := feedAll(ServerToClient, Config{}, []byte("HTTP/1.1 400 Bad Request\r\n"))
	if got, want := evs[0].Err.Error(), `not TLS: first record type 72 (0x48) is neither handshake (22) nor alert (21); first bytes 485454502f312e312034303020426164 "HTTP/1.1 400 Bad", looks like an HTTP response`; got != want {
		t.Errorf("error text\n got %s\nwant %s", got, want)
	}
}

// minimalClientHello is a well-formed ClientHello with the given extensions
// block (nil: no extensions at all).
func minimalClientHello(exts []byte) []byte {
	body := []byte{3, 3}
	body = append(body, make([]byte, 32)...) // random
	body = append(body, 0)                   // session id
	body = append(body, 0, 2, 0x13, 0x01)    // one cipher suite
	body = append(body, 1, 0)                // null compression
	if exts != nil {
		body = append(body, byte(len(exts)>>8), byte(len(exts)))
		body = append(body, exts...)
	}
	return handshakeMsg(HandshakeClientHello, body)
}

// tls13ServerHello is a ServerHello that selects TLS 1.3.
func tls13ServerHello() []byte {
	body := []byte{3, 3}
	body = append(body, bytes.Repeat([]byte{1}, 32)...)
	body = append(body, 0, 0x13, 0x01, 0)
	exts := []byte{0, 43, 0, 2, 3, 4, 0, 51, 0, 6, 0, 29, 0, 2, 0xaa, 0xbb}
	body = append(body, byte(len(exts)>>8), byte(len(exts)))
	body = append(body, exts...)
	return handshakeMsg(HandshakeServerHello, body)
}

func TestParseErrors(t *testing.T) {
	ch := minimalClientHello(nil)
	tests := []struct {
		name   string
		dir    Direction
		in     [][]byte
		want   error
		offset int64
		prior  []EventKind // events before the ParseError
	}{{
		name: "bad content type after the first record", dir: ClientToServer,
		in:   [][]byte{record(RecordHandshake, ch), {0x30, 3, 3, 0, 1, 0}},
		want: ErrBadRecord, offset: int64(5 + len(ch)), prior: []EventKind{KindClientHello},
	}, {
		name: "bad version after the first record", dir: ClientToServer,
		in:   [][]byte{record(RecordHandshake, ch), {0x16, 2, 0, 0, 1, 0}},
		want: ErrBadRecord, offset: int64(5 + len(ch)), prior: []EventKind{KindClientHello},
	}, {
		name: "record overflow after the first record", dir: ServerToClient,
		in:   [][]byte{record(RecordAlert, []byte{1, 0}), {0x17, 3, 3, 0x48, 0x01}},
		want: ErrBadRecord, offset: 7, prior: []EventKind{KindAlert},
	}, {
		name: "handshake message over 64 KiB", dir: ClientToServer,
		in:   [][]byte{record(RecordHandshake, []byte{1, 1, 0, 1})},
		want: ErrMessageTooLarge,
	}, {
		name: "certificate over 256 KiB", dir: ServerToClient,
		in:   [][]byte{record(RecordHandshake, []byte{11, 4, 0, 1})},
		want: ErrMessageTooLarge,
	}, {
		name: "extension length runs past the hello", dir: ClientToServer,
		in:   [][]byte{record(RecordHandshake, minimalClientHello([]byte{0, 16, 0, 9, 0, 3, 2, 'h', '2'}))},
		want: ErrMalformed,
	}, {
		name: "empty ALPN protocol", dir: ClientToServer,
		in:   [][]byte{record(RecordHandshake, minimalClientHello([]byte{0, 16, 0, 3, 0, 1, 0}))},
		want: ErrMalformed,
	}, {
		name: "trailing bytes after the extensions", dir: ClientToServer,
		in:   [][]byte{record(RecordHandshake, handshakeMsg(HandshakeClientHello, append(minimalClientHello([]byte{})[4:], 0)))},
		want: ErrMalformed,
	}, {
		name: "truncated ServerHello", dir: ServerToClient,
		in:   [][]byte{record(RecordHandshake, handshakeMsg(HandshakeServerHello, []byte{3, 3, 1, 2}))},
		want: ErrMalformed,
	}, {
		name: "ServerHelloDone with a body", dir: ServerToClient,
		in:   [][]byte{record(RecordHandshake, handshakeMsg(HandshakeServerHelloDone, []byte{0}))},
		want: ErrMalformed,
	}, {
		name: "certificate with an empty entry", dir: ServerToClient,
		in:   [][]byte{record(RecordHandshake, handshakeMsg(HandshakeCertificate, []byte{0, 0, 3, 0, 0, 0}))},
		want: ErrMalformed,
	}, {
		name: "odd alert record", dir: ServerToClient,
		in:   [][]byte{record(RecordAlert, []byte{2, 80, 1})},
		want: ErrMalformed,
	}, {
		name: "bad ChangeCipherSpec", dir: ServerToClient,
		in:   [][]byte{record(RecordAlert, []byte{1, 0}), record(RecordChangeCipherSpec, []byte{2})},
		want: ErrMalformed, offset: 7, prior: []EventKind{KindAlert},
	}, {
		name: "server application data before its key change", dir: ServerToClient,
		in:   [][]byte{record(RecordHandshake, handshakeMsg(HandshakeServerHelloDone, nil)), record(RecordApplicationData, []byte{1, 2, 3})},
		want: ErrUnexpected, offset: 9, prior: []EventKind{KindServerHelloDone},
	}, {
		name: "alert inside a fragmented message", dir: ClientToServer,
		in:   [][]byte{record(RecordHandshake, ch[:10]), record(RecordAlert, []byte{2, 10})},
		want: ErrUnexpected, offset: 15,
	}, {
		name: "protected record cuts a message", dir: ClientToServer,
		in:   [][]byte{record(RecordHandshake, ch[:10]), record(RecordApplicationData, []byte{1})},
		want: ErrUnexpected, offset: 15,
	}, {
		name: "plaintext after the TLS 1.3 ServerHello in its record", dir: ServerToClient,
		in:   [][]byte{record(RecordHandshake, append(tls13ServerHello(), handshakeMsg(8, nil)...))},
		want: ErrUnexpected, prior: []EventKind{KindServerHello},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			stream := bytes.Join(tc.in, nil)
			for _, chunks := range [][][]byte{tc.in, splitBytes(stream)} {
				evs, p := feedAll(tc.dir, Config{}, append(chunks, record(RecordHandshake, ch))...)
				want := append(slices.Clone(tc.prior), KindParseError)
				if !slices.Equal(kindsOf(evs), want) {
					t.Fatalf("kinds %v, want %v (%v)", kindsOf(evs), want, evs)
				}
				last := evs[len(evs)-1]
				if !errors.Is(last.Err, tc.want) || last.Offset != tc.offset || !p.Done() {
					t.Errorf("error %v at %d (done %v), want %v at %d", last.Err, last.Offset, p.Done(), tc.want, tc.offset)
				}
			}
		})
	}
}

func splitBytes(b []byte) [][]byte {
	out := make([][]byte, len(b))
	for i := range b {
		out[i] = b[i : i+1]
	}
	return out
}

// TestReassembly re-frames the server's TLS 1.2 handshake messages into
// records of various sizes: a message split across many records, several
// messages in one record, must give the same messages.
func TestReassembly(t *testing.T) {
	serverCert := testCert(t, "Contrast", bytes.Repeat([]byte("evidence"), 600)) // > 4 KiB
	c := runHandshake(t,
		&tls.Config{Certificates: []tls.Certificate{serverCert}, ClientAuth: tls.RequestClientCert},
		&tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS12})
	if c.clientErr != nil {
		t.Fatal(c.clientErr)
	}
	// Collect the plaintext handshake bytes up to the server's CCS.
	s := c.stream(ServerToClient)
	var hs []byte
	for len(s) >= 5 && s[0] == byte(RecordHandshake) {
		n := int(s[3])<<8 | int(s[4])
		hs = append(hs, s[5:5+n]...)
		s = s[5+n:]
	}
	messages := func(evs []Event) []Event {
		var out []Event
		for _, ev := range evs {
			ev.Offset, ev.Record = 0, RecordHeader{}
			out = append(out, ev)
		}
		return out
	}
	if len(hs) > 16384 {
		t.Fatalf("test handshake unexpectedly large: %d", len(hs))
	}
	want, _ := feedAll(ServerToClient, Config{}, record(RecordHandshake, hs))
	if !slices.Equal(kindsOf(want), []EventKind{KindServerHello, KindCertificate, KindHandshakeMessage, KindCertificateRequest, KindServerHelloDone}) {
		t.Fatalf("kinds %v", kindsOf(want))
	}
	for _, size := range []int{1, 3, 4, 5, 100, 1000, 4096} {
		var stream []byte
		for rest := hs; len(rest) > 0; {
			n := min(size, len(rest))
			stream = append(stream, record(RecordHandshake, rest[:n])...)
			rest = rest[n:]
		}
		got, _ := feedAll(ServerToClient, Config{}, stream)
		checkLocated(t, stream, got)
		if !reflect.DeepEqual(messages(got), messages(want)) {
			t.Errorf("records of %d bytes: %v, want %v", size, got, want)
		}
		// A message is located at the record holding its first byte.
		for _, ev := range got {
			if stream[ev.Offset] != byte(RecordHandshake) {
				t.Fatalf("records of %d: %v not at a record", size, ev)
			}
		}
	}
}

func TestEncryptedRecordLimitAndDone(t *testing.T) {
	appData := record(RecordApplicationData, make([]byte, 100))
	tests := []struct {
		name     string
		cfg      Config
		records  int
		wantData int // protected-record events, the compatibility CCS included
	}{
		{"default limit", Config{}, 100, DefaultMaxEncryptedRecords},
		{"under the limit", Config{}, 10, 11},
		{"small limit", Config{MaxEncryptedRecords: 3}, 10, 3},
		{"no limit", Config{MaxEncryptedRecords: -1}, 100, 101},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var evs []Event
			p := tc.cfg.NewParser(ServerToClient, func(ev Event) { evs = append(evs, ev) })
			p.Write(record(RecordHandshake, tls13ServerHello()))
			if p.Done() {
				t.Fatal("Done before any application data")
			}
			p.Write(record(RecordChangeCipherSpec, []byte{1}))
			if p.Done() {
				t.Fatal("Done after the compatibility CCS")
			}
			p.Write(bytes.Repeat(appData, tc.records))
			if !p.Done() {
				t.Fatal("not Done after application data")
			}
			// The limit counts every protected record, the CCS too.
			if got := len(allOf(evs, KindApplicationData)) + len(allOf(evs, KindRecord)); got != tc.wantData {
				t.Errorf("%d protected-record events, want %d", got, tc.wantData)
			}
			if p.Version() != tls.VersionTLS13 {
				t.Errorf("Version %x", p.Version())
			}
		})
	}
}

// TestSetNegotiatedVersion: a standalone client parser told the version
// treats its CCS accordingly.
func TestSetNegotiatedVersion(t *testing.T) {
	ch := record(RecordHandshake, minimalClientHello(nil))
	ccs := record(RecordChangeCipherSpec, []byte{1})
	finished := record(RecordHandshake, handshakeMsg(HandshakeFinished, make([]byte, 12)))
	for _, tc := range []struct {
		version uint16
		want    []EventKind
	}{
		{tls.VersionTLS12, []EventKind{KindClientHello, KindChangeCipherSpec, KindRecord}},
		{tls.VersionTLS13, []EventKind{KindClientHello, KindChangeCipherSpec, KindHandshakeMessage}},
		// Unknown: a Finished is no ClientHello, so it must be encrypted.
		{0, []EventKind{KindClientHello, KindChangeCipherSpec, KindRecord}},
	} {
		var evs []Event
		p := NewParser(ClientToServer, func(ev Event) { evs = append(evs, ev) })
		p.SetNegotiatedVersion(tc.version)
		p.Write(slices.Concat(ch, ccs, finished))
		if !slices.Equal(kindsOf(evs), tc.want) {
			t.Errorf("version %x: kinds %v, want %v", tc.version, kindsOf(evs), tc.want)
		}
	}
}

// TestTruncatedPrefixes: every prefix of a real exchange gives a prefix of
// the full event list, never a panic or an invented event.
func TestTruncatedPrefixes(t *testing.T) {
	c := runHandshake(t,
		&tls.Config{Certificates: []tls.Certificate{testCert(t, "Contrast", []byte{1})}},
		&tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS12})
	for _, dir := range []Direction{ClientToServer, ServerToClient} {
		s := c.stream(dir)
		full, _ := feedAll(dir, Config{}, s)
		for n := range len(s) {
			got, _ := feedAll(dir, Config{}, s[:n])
			if len(got) > len(full) || (len(got) > 0 && !reflect.DeepEqual(got, full[:len(got)])) {
				t.Fatalf("%s prefix %d: %v is no prefix of %v", dir, n, got, full)
			}
		}
	}
}

// TestGarbage flips bytes of a real exchange: the parser must neither panic
// nor report out of place, and must end on a ParseError or keep going.
func TestGarbage(t *testing.T) {
	c := runHandshake(t,
		&tls.Config{Certificates: []tls.Certificate{testCert(t, "Contrast", []byte{1})}},
		&tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS12})
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 300 {
		for _, dir := range []Direction{ClientToServer, ServerToClient} {
			s := slices.Clone(c.stream(dir))
			for range 1 + rng.IntN(4) {
				s[rng.IntN(len(s))] ^= byte(1 + rng.IntN(255))
			}
			var evs []Event
			p := NewParser(dir, func(ev Event) { evs = append(evs, ev) })
			writeSplit(p, s, rng, 64)
			checkLocated(t, s, evs)
			for j, ev := range evs {
				if (ev.Kind == KindParseError || ev.Kind == KindNotTLS) && j != len(evs)-1 {
					t.Fatalf("round %d: events after %v: %v", i, ev, evs)
				}
			}
		}
	}
}

func TestEncryptedPathDoesNotAllocate(t *testing.T) {
	p := Config{MaxEncryptedRecords: -1}.NewParser(ServerToClient, func(Event) {})
	p.Write(record(RecordHandshake, tls13ServerHello()))
	buf := bytes.Repeat(record(RecordApplicationData, make([]byte, 1000)), 8)
	if allocs := testing.AllocsPerRun(100, func() { p.Write(buf) }); allocs != 0 {
		t.Errorf("%v allocations per write in the encrypted phase", allocs)
	}
}

func BenchmarkParserEncryptedRecords(b *testing.B) {
	for _, size := range []int{100, 16384} {
		b.Run(fmt.Sprintf("record=%d", size), func(b *testing.B) {
			var n int
			p := Config{MaxEncryptedRecords: -1}.NewParser(ServerToClient, func(Event) { n++ })
			p.Write(record(RecordHandshake, tls13ServerHello()))
			// What one 32 KiB relay read carries.
			rec := record(RecordApplicationData, make([]byte, size))
			buf := bytes.Repeat(rec, max(1, 32<<10/len(rec)))
			b.SetBytes(int64(len(buf)))
			b.ReportAllocs()
			for b.Loop() {
				p.Write(buf)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n), "ns/record")
		})
	}
}
