package contrastcli

import (
	"bytes"
	"encoding/asn1"
	"strings"
	"testing"
)

// sgxExt builds an SGX PCK extension value from entries.
func sgxExt(t testing.TB, entries ...sgxExtensionEntry) []byte {
	t.Helper()
	b, err := asn1.Marshal(entries)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func octets(b []byte) asn1.RawValue {
	return asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagOctetString, Bytes: b}
}

func TestPIIDFromSGXExtension(t *testing.T) {
	piid := bytes.Repeat([]byte{0x5e}, 16)
	ppid := asn1.ObjectIdentifier{1, 2, 840, 113741, 1, 13, 1, 1}
	tests := []struct {
		name    string
		der     []byte
		want    []byte
		wantErr string
	}{
		{name: "piid after ppid", der: sgxExt(t, sgxExtensionEntry{ID: ppid, Value: octets([]byte{1})}, sgxExtensionEntry{ID: piidOID(), Value: octets(piid)}), want: piid},
		{name: "no piid", der: sgxExt(t, sgxExtensionEntry{ID: ppid, Value: octets([]byte{1})}), wantErr: "no PIID"},
		{name: "short piid", der: sgxExt(t, sgxExtensionEntry{ID: piidOID(), Value: octets([]byte{1, 2})}), wantErr: "unexpected PIID length of 2, want 16"},
		{
			name:    "piid not octets",
			der:     sgxExt(t, sgxExtensionEntry{ID: piidOID(), Value: asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagInteger, Bytes: []byte{1}}}),
			wantErr: "not an OCTET STRING",
		},
		{name: "garbage", der: []byte{0x30, 0x03, 0x01}, wantErr: "extracting PCK certificate extensions"},
		{name: "trailing", der: append(sgxExt(t), 0), wantErr: "trailing data"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := piidFromSGXExtension(tc.der)
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

// FuzzPIIDFromSGXExtension: the PCK certificate comes from the server, so the
// parser must never panic and only ever return 16 bytes.
func FuzzPIIDFromSGXExtension(f *testing.F) {
	f.Add(sgxExt(f, sgxExtensionEntry{ID: piidOID(), Value: octets(bytes.Repeat([]byte{1}, 16))}))
	f.Add(sgxExt(f))
	f.Add([]byte{0x30, 0x80})
	f.Fuzz(func(t *testing.T, der []byte) {
		piid, err := piidFromSGXExtension(der)
		if err == nil && len(piid) != 16 {
			t.Fatalf("PIID of %d bytes accepted", len(piid))
		}
	})
}
