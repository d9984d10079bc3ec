package atls

import (
	"bytes"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

func TestALPNEntry(t *testing.T) {
	nonce := []byte{0x00, 0xab, 0xCD, 0xff}
	if got, want := ALPNEntry(nonce), "atls:v1:nonce:00abcdff"; got != want {
		t.Fatalf("ALPNEntry = %q, want %q", got, want)
	}
	if got, want := SNIEntry([]byte{0xfb, 0xff}), "+/8="; got != want {
		t.Fatalf("SNIEntry = %q, want %q (standard base64)", got, want)
	}
}

func TestNewNonce(t *testing.T) {
	a, err := NewNonce()
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewNonce()
	if err != nil {
		t.Fatal(err)
	}
	if len(a) != NonceSize || len(b) != NonceSize {
		t.Fatalf("nonce lengths %d, %d; want %d", len(a), len(b), NonceSize)
	}
	if bytes.Equal(a, b) {
		t.Fatal("two nonces are equal")
	}
}

func TestNonceFromHello(t *testing.T) {
	nonce := bytes.Repeat([]byte{0x5a}, NonceSize)
	other := bytes.Repeat([]byte{0x11}, NonceSize)
	tests := []struct {
		name       string
		serverName string
		alpn       []string
		wantNonce  []byte
		wantSource string
		wantErr    string // substring; "" means no error
	}{
		{name: "alpn", serverName: "localhost", alpn: []string{ALPNEntry(nonce), "h2"}, wantNonce: nonce, wantSource: SourceALPN},
		{name: "alpn after h2", serverName: "localhost", alpn: []string{"h2", ALPNEntry(nonce)}, wantNonce: nonce, wantSource: SourceALPN},
		{name: "alpn wins over sni", serverName: SNIEntry(other), alpn: []string{ALPNEntry(nonce), "h2"}, wantNonce: nonce, wantSource: SourceALPN},
		{name: "first atls entry wins", alpn: []string{ALPNEntry(nonce), ALPNEntry(other)}, wantNonce: nonce, wantSource: SourceALPN},
		{name: "uppercase hex accepted", alpn: []string{"atls:v1:nonce:" + strings.ToUpper(hex.EncodeToString(nonce))}, wantNonce: nonce, wantSource: SourceALPN},
		{name: "empty alpn nonce", alpn: []string{"atls:v1:nonce:"}, wantNonce: []byte{}, wantSource: SourceALPN},
		{name: "sni", serverName: SNIEntry(nonce), alpn: []string{"h2"}, wantNonce: nonce, wantSource: SourceSNI},
		{name: "sni without alpn", serverName: SNIEntry(nonce), wantNonce: nonce, wantSource: SourceSNI},
		{
			name: "unsupported version", serverName: SNIEntry(nonce), alpn: []string{"atls:v2:nonce:00", "h2"},
			wantSource: SourceALPN, wantErr: `decoding nonce from SupportedProtos: proto refers to an unsupported atls version: "atls:v2:nonce:00"`,
		},
		{
			name: "bare atls prefix is a version error", alpn: []string{"atlsfoo"},
			wantSource: SourceALPN, wantErr: "proto refers to an unsupported atls version",
		},
		{
			name: "bad hex", alpn: []string{"atls:v1:nonce:zz"},
			wantSource: SourceALPN, wantErr: "decoding nonce from SupportedProtos: decoding nonce: encoding/hex: invalid byte",
		},
		{
			name: "sni not base64", serverName: "localhost", alpn: []string{"h2"},
			wantSource: SourceSNI, wantErr: "decoding nonce from SNI: illegal base64 data at input byte 8",
		},
		{name: "nothing", alpn: []string{"h2"}, wantErr: "no nonce in supported protocols or SNI"},
		{name: "empty hello", wantErr: "no nonce in supported protocols or SNI"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, source, err := NonceFromHello(tc.serverName, tc.alpn)
			if source != tc.wantSource {
				t.Errorf("source = %q, want %q", source, tc.wantSource)
			}
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if !bytes.Equal(got, tc.wantNonce) {
				t.Fatalf("nonce = %x, want %x", got, tc.wantNonce)
			}
		})
	}
}

func TestNonceFromHelloErrorsAreTyped(t *testing.T) {
	if _, _, err := NonceFromHello("", []string{"atls:v9:nonce:00"}); !errors.Is(err, ErrUnsupportedVersion) {
		t.Fatalf("err = %v, want ErrUnsupportedVersion", err)
	}
	if _, _, err := NonceFromHello("", nil); !errors.Is(err, ErrNoNonce) {
		t.Fatalf("err = %v, want ErrNoNonce", err)
	}
}

func TestNonceFromSNI(t *testing.T) {
	nonce := bytes.Repeat([]byte{0x42}, NonceSize)
	tests := []struct {
		name    string
		sni     string
		want    []byte
		wantErr bool
	}{
		{name: "base64 nonce", sni: SNIEntry(nonce), want: nonce},
		// The old Coordinator decoded an empty SNI to an empty nonce and went on.
		{name: "empty", sni: "", want: []byte{}},
		{name: "authority of a newer CLI", sni: "localhost", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := NonceFromSNI(tc.sni)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tc.wantErr)
			}
			if !tc.wantErr && !bytes.Equal(got, tc.want) {
				t.Fatalf("nonce = %x, want %x", got, tc.want)
			}
		})
	}
}

// FuzzNonceFromHello checks NonceFromHello never panics and that whatever it
// accepts is consistent with the entry it came from. alpn is a NUL-separated
// list.
func FuzzNonceFromHello(f *testing.F) {
	nonce := bytes.Repeat([]byte{0xa5}, NonceSize)
	f.Add("localhost", ALPNEntry(nonce)+"\x00h2")
	f.Add(SNIEntry(nonce), "h2")
	f.Add("", "atls:v2:nonce:00\x00h2")
	f.Add("not base64!", "")
	f.Add("", "atls:v1:nonce:0")
	f.Add("AA==\n", "atls")
	f.Fuzz(func(t *testing.T, serverName, alpnList string) {
		var alpn []string
		if alpnList != "" {
			alpn = strings.Split(alpnList, "\x00")
		}
		got, source, err := NonceFromHello(serverName, alpn)
		var first string
		for _, p := range alpn {
			if strings.HasPrefix(p, "atls") {
				first = p
				break
			}
		}
		switch {
		case first != "":
			if source != SourceALPN {
				t.Fatalf("atls entry %q present but source %q", first, source)
			}
			versionOK := strings.HasPrefix(first, alpnPrefix)
			if versionOK == errors.Is(err, ErrUnsupportedVersion) {
				t.Fatalf("entry %q: err %v", first, err)
			}
			if err == nil && !strings.EqualFold(ALPNEntry(got), first) {
				t.Fatalf("entry %q decoded to %x", first, got)
			}
		case serverName == "":
			if !errors.Is(err, ErrNoNonce) || source != "" {
				t.Fatalf("empty hello: source %q err %v", source, err)
			}
		default:
			if source != SourceSNI {
				t.Fatalf("sni %q: source %q", serverName, source)
			}
			if err == nil {
				again, err2 := NonceFromSNI(SNIEntry(got))
				if err2 != nil || !bytes.Equal(again, got) {
					t.Fatalf("sni nonce %x does not round-trip", got)
				}
			}
		}
		if err != nil && got != nil {
			t.Fatalf("error %v with nonce %x", err, got)
		}
	})
}
