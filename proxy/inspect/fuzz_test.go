package inspect

import (
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"testing"
)

var updateCorpus = flag.Bool("update-corpus", false, "rewrite the seed corpora in testdata/fuzz from fresh loopback handshakes")

// normalized drops what legitimately depends on how the bytes were split:
// a NotTLS verdict quotes, and fills the header with, whatever bytes had
// arrived when it was made.
func normalized(evs []Event) []Event {
	out := make([]Event, len(evs))
	for i, ev := range evs {
		if nt, ok := ev.Err.(*NotTLSError); ok {
			ev.Err = &NotTLSError{Reason: nt.Reason}
			ev.Record = RecordHeader{Type: ev.Record.Type}
		}
		out[i] = ev
	}
	return out
}

// checkInvariants holds for every input: events point at record headers in
// order, a terminal event is the last one and leaves the parser Done.
func checkInvariants(t *testing.T, stream []byte, evs []Event, p *Parser) {
	t.Helper()
	checkLocated(t, stream, evs)
	for i, ev := range evs {
		terminal := ev.Kind == KindNotTLS || ev.Kind == KindParseError
		if terminal && i != len(evs)-1 {
			t.Fatalf("events after %v", ev)
		}
		if terminal && (!p.Done() || ev.Err == nil) {
			t.Fatalf("%v: done %v", ev, p.Done())
		}
		if ev.Kind == KindNotTLS && ev.Offset != 0 {
			t.Fatalf("%v not at the start", ev)
		}
	}
}

func FuzzParser(f *testing.F) {
	ch := record(RecordHandshake, minimalClientHello([]byte{0, 16, 0, 5, 0, 3, 2, 'h', '2'}))
	sh := record(RecordHandshake, tls13ServerHello())
	data := record(RecordApplicationData, []byte("0123456789abcdef0123"))
	ccs := record(RecordChangeCipherSpec, []byte{1})
	f.Add(append(append(ch, ccs...), data...), append(append(sh, ccs...), data...), uint64(1))
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"), []byte("HTTP/1.1 400 Bad Request\r\n\r\n"), uint64(2))
	f.Add(ch, record(RecordAlert, []byte{2, 80}), uint64(3))
	f.Fuzz(func(t *testing.T, c2s, s2c []byte, seed uint64) {
		rng := rand.New(rand.NewPCG(seed, 0))
		// Each direction alone: the same events however the bytes are split.
		for _, dir := range []Direction{ClientToServer, ServerToClient} {
			b := c2s
			if dir == ServerToClient {
				b = s2c
			}
			whole, p := feedAll(dir, Config{}, b)
			checkInvariants(t, b, whole, p)
			var split []Event
			q := NewParser(dir, func(ev Event) { split = append(split, ev) })
			writeSplit(q, b, rng, 1+rng.IntN(64))
			if !reflect.DeepEqual(normalized(split), normalized(whole)) {
				t.Fatalf("%s: split events\n%v\ndiffer from whole\n%v", dir, split, whole)
			}
		}
		// Both directions of a Conn, interleaved.
		col := &collector{}
		pc, ps := NewConn(col.sink)
		rc, rs := c2s, s2c
		for len(rc) > 0 || len(rs) > 0 {
			if len(rc) > 0 && (len(rs) == 0 || rng.IntN(2) == 0) {
				n := min(len(rc), 1+rng.IntN(200))
				pc.Write(rc[:n])
				rc = rc[n:]
			} else {
				n := min(len(rs), 1+rng.IntN(200))
				ps.Write(rs[:n])
				rs = rs[n:]
			}
		}
		checkInvariants(t, c2s, col.events[ClientToServer], pc)
		checkInvariants(t, s2c, col.events[ServerToClient], ps)
	})
}

func FuzzClientHello(f *testing.F) {
	f.Add(minimalClientHello(nil))
	f.Add(minimalClientHello([]byte{}))
	f.Add(minimalClientHello([]byte{
		0, 0, 0, 14, 0, 12, 0, 0, 9, 'l', 'o', 'c', 'a', 'l', 'h', 'o', 's', 't', // server_name
		0, 16, 0, 5, 0, 3, 2, 'h', '2', // ALPN
		0, 43, 0, 5, 4, 0x3a, 0x3a, 3, 4, // supported_versions with GREASE
	}))
	f.Fuzz(func(t *testing.T, msg []byte) {
		ch, err := ParseClientHello(msg)
		if err != nil {
			if ch != nil || !(errors.Is(err, ErrMalformed) || errors.Is(err, ErrUnexpected)) {
				t.Fatalf("ParseClientHello: %v, %v", ch, err)
			}
			return
		}
		for _, p := range ch.ALPN {
			if p == "" {
				t.Fatal("empty ALPN entry accepted")
			}
		}
		if len(msg) > DefaultMaxHandshakeMessage+4 {
			return
		}
		// The parser, given the message cut across records, reports the
		// same ClientHello.
		var stream []byte
		for rest := msg; len(rest) > 0; {
			n := min(len(rest), 1+len(msg)/3, 16384)
			stream = append(stream, record(RecordHandshake, rest[:n])...)
			rest = rest[n:]
		}
		evs, _ := feedAll(ClientToServer, Config{}, stream)
		if len(evs) != 1 || evs[0].Kind != KindClientHello || !reflect.DeepEqual(evs[0].ClientHello, ch) {
			t.Fatalf("parser events %v, want the ClientHello %+v", evs, ch)
		}
	})
}

// TestUpdateFuzzCorpus writes real handshakes as seed corpora:
//
//	go test ./proxy/inspect -run TestUpdateFuzzCorpus -update-corpus
func TestUpdateFuzzCorpus(t *testing.T) {
	if !*updateCorpus {
		t.Skip("run with -update-corpus to rewrite testdata/fuzz")
	}
	serverCert := testCert(t, "Contrast", []byte("attestation document"))
	alpn := []string{"atls:v1:nonce:00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff", "h2"}
	scenarios := []struct {
		name           string
		server, client *tls.Config
	}{
		{"tls13", &tls.Config{Certificates: []tls.Certificate{serverCert}, NextProtos: []string{"h2"}},
			&tls.Config{InsecureSkipVerify: true, ServerName: "localhost", NextProtos: alpn}},
		{"tls12", &tls.Config{Certificates: []tls.Certificate{serverCert}, NextProtos: []string{"h2"}, ClientAuth: tls.RequestClientCert},
			&tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS12, ServerName: "ABEiM0RVZneImaq7zN3u/wARIjNEVWZ3iJmqu8zd7v8=", NextProtos: []string{"h2"}}},
		{"hrr", &tls.Config{Certificates: []tls.Certificate{serverCert}, CurvePreferences: []tls.CurveID{tls.CurveP256}},
			&tls.Config{InsecureSkipVerify: true, ServerName: "localhost", NextProtos: alpn}},
		{"issuer_error", &tls.Config{GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return nil, errIssuer }},
			&tls.Config{InsecureSkipVerify: true, ServerName: "localhost", NextProtos: alpn}},
	}
	for i, sc := range scenarios {
		c := runHandshake(t, sc.server, sc.client)
		c2s, s2c := c.stream(ClientToServer), c.stream(ServerToClient)
		writeCorpus(t, "FuzzParser", sc.name, c2s, s2c, uint64(i))
		for j, msg := range clientHellos(c2s) {
			writeCorpus(t, "FuzzClientHello", fmt.Sprintf("%s_%d", sc.name, j), msg)
		}
	}
}

// clientHellos returns the ClientHello messages of a stream that fill a
// record each (Go's do), the second one after a HelloRetryRequest included.
func clientHellos(s []byte) [][]byte {
	var out [][]byte
	for len(s) >= 5 {
		n := int(s[3])<<8 | int(s[4])
		if len(s) < 5+n {
			break
		}
		body := s[5 : 5+n]
		if _, err := ParseClientHello(body); s[0] == byte(RecordHandshake) && err == nil {
			out = append(out, body)
		}
		s = s[5+n:]
	}
	return out
}

// writeCorpus writes one seed in the "go test fuzz v1" file format.
func writeCorpus(t *testing.T, target, name string, args ...any) {
	t.Helper()
	out := "go test fuzz v1\n"
	for _, a := range args {
		switch v := a.(type) {
		case []byte:
			out += "[]byte(" + strconv.QuoteToASCII(string(v)) + ")\n"
		case uint64:
			out += fmt.Sprintf("uint64(%d)\n", v)
		default:
			t.Fatalf("unsupported corpus value %T", a)
		}
	}
	dir := filepath.Join("testdata", "fuzz", target)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), []byte(out), 0o644); err != nil {
		t.Fatal(err)
	}
}
