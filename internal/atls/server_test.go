package atls

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// echoIssuer returns the report data itself as the evidence, so a client can
// check the binding without a TEE.
type echoIssuer struct{}

func (echoIssuer) Issue(_ context.Context, rd [64]byte) (asn1.ObjectIdentifier, []byte, error) {
	return OIDSNP(), rd[:], nil
}

// checkEcho is the client-side counterpart of echoIssuer.
func checkEcho(nonce []byte) func(*x509.Certificate) error {
	return func(cert *x509.Certificate) error {
		spki, err := x509.MarshalPKIXPublicKey(cert.PublicKey)
		if err != nil {
			return err
		}
		want := ReportData(spki, nonce)
		var found int
		for _, ext := range cert.Extensions {
			if !IsAttestationOID(ext.Id) {
				continue
			}
			found++
			if ext.Critical {
				return errors.New("attestation extension is critical")
			}
			if !bytes.Equal(ext.Value, want[:]) {
				return fmt.Errorf("report data %x, want %x", ext.Value, want)
			}
		}
		if found != 1 {
			return fmt.Errorf("%d attestation extensions, want 1", found)
		}
		return nil
	}
}

// serverResult is what the server side of one handshake saw.
type serverResult struct {
	state tls.ConnectionState
	err   error
}

// handshake runs one aTLS handshake over loopback TCP and returns the client's
// error and state, the server's result, and the first bytes the server sent.
//
//lint:ignore ST1008 the client's error belongs next to the client's state.
func handshake(t *testing.T, srvCfg *tls.Config, cliCfg *tls.Config) (tls.ConnectionState, error, serverResult, []byte) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var wg sync.WaitGroup
	var sr serverResult
	wg.Add(1)
	go func() {
		defer wg.Done()
		raw, err := ln.Accept()
		if err != nil {
			sr.err = err
			return
		}
		defer raw.Close()
		conn := tls.Server(raw, srvCfg)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		sr.err = conn.HandshakeContext(ctx)
		if sr.err == nil {
			sr.state = conn.ConnectionState()
			// Let the client finish reading before closing.
			_, _ = io.Copy(io.Discard, conn)
		}
	}()
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	rec := &recordingConn{Conn: raw}
	conn := tls.Client(rec, cliCfg)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cerr := conn.HandshakeContext(ctx)
	state := conn.ConnectionState()
	conn.Close()
	wg.Wait()
	return state, cerr, sr, rec.first()
}

type recordingConn struct {
	net.Conn
	mu  sync.Mutex
	buf []byte
}

func (c *recordingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.mu.Lock()
	if len(c.buf) < 64 {
		c.buf = append(c.buf, p[:n]...)
	}
	c.mu.Unlock()
	return n, err
}

func (c *recordingConn) first() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]byte(nil), c.buf...)
}

func TestHandshake(t *testing.T) {
	for _, style := range []NonceStyle{NonceALPN, NonceSNI} {
		for _, maxVersion := range []uint16{tls.VersionTLS13, tls.VersionTLS12} {
			t.Run(fmt.Sprintf("%s/%s", style, tls.VersionName(maxVersion)), func(t *testing.T) {
				srvCfg, err := ServerConfig(echoIssuer{}, ServerOptions{})
				if err != nil {
					t.Fatal(err)
				}
				nonce, err := NewNonce()
				if err != nil {
					t.Fatal(err)
				}
				var seenCert *x509.Certificate
				check := checkEcho(nonce)
				cliCfg := ClientConfig(nonce, style, "localhost", func(c *x509.Certificate) error {
					seenCert = c
					return check(c)
				})
				cliCfg.MaxVersion = maxVersion
				var serverNonce []byte
				getCert := cliCfg.GetClientCertificate
				cliCfg.GetClientCertificate = func(cri *tls.CertificateRequestInfo) (*tls.Certificate, error) {
					serverNonce, _ = ServerNonceFromAcceptableCAs(cri.AcceptableCAs)
					return getCert(cri)
				}

				state, cerr, sr, _ := handshake(t, srvCfg, cliCfg)
				if cerr != nil {
					t.Fatalf("client handshake: %v", cerr)
				}
				if sr.err != nil {
					t.Fatalf("server handshake: %v", sr.err)
				}
				if state.Version != maxVersion {
					t.Errorf("version %s, want %s", tls.VersionName(state.Version), tls.VersionName(maxVersion))
				}
				if state.NegotiatedProtocol != "h2" {
					t.Errorf("ALPN %q, want h2", state.NegotiatedProtocol)
				}
				if len(serverNonce) != NonceSize {
					t.Errorf("server nonce %x, want %d bytes", serverNonce, NonceSize)
				}
				if n := len(sr.state.PeerCertificates); n != 1 {
					t.Errorf("server saw %d client certificates, want 1", n)
				}
				wantSNI := "localhost"
				if style == NonceSNI {
					wantSNI = SNIEntry(nonce)
				}
				if sr.state.ServerName != wantSNI {
					t.Errorf("SNI %q, want %q", sr.state.ServerName, wantSNI)
				}
				if seenCert == nil {
					t.Fatal("verify callback not called")
				}
				if seenCert.Subject.CommonName != CommonName {
					t.Errorf("CN %q", seenCert.Subject.CommonName)
				}
				if d := seenCert.NotAfter.Sub(seenCert.NotBefore); d != 2*CertificateMargin {
					t.Errorf("validity %v, want %v", d, 2*CertificateMargin)
				}
				if n := len(seenCert.Extensions); n != 1 {
					t.Errorf("%d extensions, want exactly the attestation one", n)
				}
			})
		}
	}
}

// Each connection must get its own serial and server nonce, but one key.
func TestPerConnectionCertificate(t *testing.T) {
	srvCfg, err := ServerConfig(echoIssuer{}, ServerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var certs []*x509.Certificate
	var nonces [][]byte
	for range 2 {
		nonce, _ := NewNonce()
		cliCfg := ClientConfig(nonce, NonceALPN, "", func(c *x509.Certificate) error {
			certs = append(certs, c)
			return nil
		})
		getCert := cliCfg.GetClientCertificate
		cliCfg.GetClientCertificate = func(cri *tls.CertificateRequestInfo) (*tls.Certificate, error) {
			n, _ := ServerNonceFromAcceptableCAs(cri.AcceptableCAs)
			nonces = append(nonces, n)
			return getCert(cri)
		}
		if _, cerr, _, _ := handshake(t, srvCfg, cliCfg); cerr != nil {
			t.Fatal(cerr)
		}
	}
	if len(certs) != 2 || len(nonces) != 2 {
		t.Fatalf("got %d certs, %d nonces", len(certs), len(nonces))
	}
	if certs[0].SerialNumber.Cmp(certs[1].SerialNumber) == 0 {
		t.Error("serial numbers repeat")
	}
	if bytes.Equal(nonces[0], nonces[1]) {
		t.Error("server nonces repeat")
	}
	if !bytes.Equal(certs[0].RawSubjectPublicKeyInfo, certs[1].RawSubjectPublicKeyInfo) {
		t.Error("server key changed between connections")
	}
}

// alertInternalError is the plaintext record a TLS server sends instead of a
// ServerHello when it cannot build its certificate: type 21 (alert), any
// version, length 2, level fatal (2), description internal_error (80).
func isPlaintextInternalError(b []byte) bool {
	return len(b) >= 7 && b[0] == 21 && b[3] == 0 && b[4] == 2 && b[5] == 2 && b[6] == 80
}

func TestHandshakeFailures(t *testing.T) {
	failing := IssuerFunc(func(context.Context, [64]byte) (asn1.ObjectIdentifier, []byte, error) {
		return nil, nil, errors.New("failed to get SNP report")
	})
	noEvidence := IssuerFunc(func(context.Context, [64]byte) (asn1.ObjectIdentifier, []byte, error) {
		return nil, nil, nil
	})
	tests := []struct {
		name      string
		issuer    Issuer
		opts      ServerOptions
		style     NonceStyle
		sni       string
		alpn      []string // overrides the client's ALPN list
		maxVer    uint16
		wantErr   string // client error substring; "" = success
		wantAlert bool   // server's first bytes are a plaintext internal_error alert
		wantNoExt bool
	}{
		{name: "issuer error", issuer: failing, wantErr: "remote error: tls: internal error", wantAlert: true},
		{name: "issuer error tls12", issuer: failing, maxVer: tls.VersionTLS12, wantErr: "remote error: tls: internal error", wantAlert: true},
		{
			name: "unsupported atls version", issuer: echoIssuer{}, alpn: []string{"atls:v2:nonce:00", "h2"},
			wantErr: "remote error: tls: internal error", wantAlert: true,
		},
		{
			name: "old coordinator, new client", issuer: echoIssuer{}, opts: ServerOptions{SNIOnly: true},
			style: NonceALPN, sni: "localhost", wantErr: "remote error: tls: internal error", wantAlert: true,
		},
		{name: "old coordinator, old client", issuer: echoIssuer{}, opts: ServerOptions{SNIOnly: true}, style: NonceSNI},
		{
			name: "coordinator clock 3h ahead", issuer: echoIssuer{},
			opts:    ServerOptions{Now: func() time.Time { return time.Now().Add(3 * time.Hour) }},
			wantErr: "process certificate: verify certificate: x509: certificate has expired or is not yet valid: current time",
		},
		{
			name: "coordinator clock 3h behind", issuer: echoIssuer{},
			opts:    ServerOptions{Now: func() time.Time { return time.Now().Add(-3 * time.Hour) }},
			wantErr: "x509: certificate has expired or is not yet valid",
		},
		{
			name: "coordinator clock 1h ahead is tolerated", issuer: echoIssuer{},
			opts: ServerOptions{Now: func() time.Time { return time.Now().Add(time.Hour) }},
		},
		{name: "no evidence", issuer: noEvidence, wantNoExt: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srvCfg, err := ServerConfig(tc.issuer, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			nonce, _ := NewNonce()
			var extCount = -1
			cliCfg := ClientConfig(nonce, tc.style, tc.sni, func(c *x509.Certificate) error {
				extCount = len(c.Extensions)
				return nil
			})
			if tc.alpn != nil {
				cliCfg.NextProtos = tc.alpn
			}
			if tc.maxVer != 0 {
				cliCfg.MaxVersion = tc.maxVer
			}
			_, cerr, _, first := handshake(t, srvCfg, cliCfg)
			if tc.wantErr == "" {
				if cerr != nil {
					t.Fatalf("client: %v", cerr)
				}
			} else if cerr == nil || !strings.Contains(cerr.Error(), tc.wantErr) {
				t.Fatalf("client err = %v, want containing %q", cerr, tc.wantErr)
			}
			if got := isPlaintextInternalError(first); got != tc.wantAlert {
				t.Errorf("first server bytes %x: plaintext internal_error = %v, want %v", first, got, tc.wantAlert)
			}
			if tc.wantNoExt && extCount != 0 {
				t.Errorf("certificate has %d extensions, want none", extCount)
			}
		})
	}
}

func TestServerConfigNilIssuer(t *testing.T) {
	if _, err := ServerConfig(nil, ServerOptions{}); err == nil {
		t.Fatal("want error for nil issuer")
	}
}

// A server that does not send the nonce CA (any ordinary TLS server asking for
// client certificates) makes the CLI fail the handshake.
func TestClientNeedsServerNonce(t *testing.T) {
	srvCfg, err := ServerConfig(echoIssuer{}, ServerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	inner := srvCfg.GetConfigForClient
	srvCfg.GetConfigForClient = func(chi *tls.ClientHelloInfo) (*tls.Config, error) {
		c, err := inner(chi)
		if err != nil {
			return nil, err
		}
		c.ClientCAs = nil
		return c, nil
	}
	nonce, _ := NewNonce()
	_, cerr, _, _ := handshake(t, srvCfg, ClientConfig(nonce, NonceALPN, "", nil))
	if cerr == nil || !strings.Contains(cerr.Error(), "decode nonce: unexpected acceptableCAs length") {
		t.Fatalf("client err = %v", cerr)
	}
}

func TestServerNonceFromAcceptableCAs(t *testing.T) {
	nonce := bytes.Repeat([]byte{7}, NonceSize)
	key := mustKey(t)
	pool, err := nonceCertPool(nonce, key)
	if err != nil {
		t.Fatal(err)
	}
	//lint:ignore SA1019 Subjects is the exact DER list Go's server sends.
	good := pool.Subjects()
	notB64, _ := asn1.Marshal(rdn(t, "not base64!"))
	noCN, _ := asn1.Marshal(rdnOID(t, asn1.ObjectIdentifier{2, 5, 4, 10}, "org"))
	tests := []struct {
		name    string
		cas     [][]byte
		want    []byte
		wantErr string
	}{
		{name: "nonce", cas: good, want: nonce},
		{name: "none", cas: nil, wantErr: "unexpected acceptableCAs length"},
		{name: "two", cas: [][]byte{good[0], good[0]}, wantErr: "unexpected acceptableCAs length"},
		{name: "garbage", cas: [][]byte{{0x30, 0x05}}, wantErr: "unmarshal acceptableCAs"},
		{name: "not base64", cas: [][]byte{notB64}, wantErr: "decode nonce"},
		{name: "no CN", cas: [][]byte{noCN}, wantErr: "CN not found"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ServerNonceFromAcceptableCAs(tc.cas)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || !bytes.Equal(got, tc.want) {
				t.Fatalf("got %x, %v; want %x", got, err, tc.want)
			}
		})
	}
}

func FuzzServerNonceFromAcceptableCAs(f *testing.F) {
	key, err := mustKeyErr()
	if err != nil {
		f.Fatal(err)
	}
	pool, err := nonceCertPool(bytes.Repeat([]byte{1}, NonceSize), key)
	if err != nil {
		f.Fatal(err)
	}
	//lint:ignore SA1019 Subjects is the exact DER list Go's server sends.
	f.Add(pool.Subjects()[0])
	f.Add([]byte{0x30, 0x00})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, der []byte) {
		nonce, err := ServerNonceFromAcceptableCAs([][]byte{der})
		if err == nil && nonce == nil {
			t.Fatal("nil nonce without error")
		}
	})
}

func TestReportData(t *testing.T) {
	a := ReportData([]byte("key"), []byte("nonce"))
	b := ReportData([]byte("keyn"), []byte("once"))
	if a != b {
		t.Fatal("ReportData must hash the plain concatenation")
	}
	if a == ReportData([]byte("key"), []byte("nonce2")) {
		t.Fatal("ReportData ignores the nonce")
	}
}
