package atls

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509/pkix"
	"encoding/asn1"
	"testing"
)

func mustKeyErr() (*ecdsa.PrivateKey, error) {
	return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
}

func mustKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := mustKeyErr()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// rdn is a distinguished name with only a CN.
func rdn(t *testing.T, cn string) pkix.RDNSequence {
	return rdnOID(t, asn1.ObjectIdentifier{2, 5, 4, 3}, cn)
}

func rdnOID(t *testing.T, oid asn1.ObjectIdentifier, value string) pkix.RDNSequence {
	t.Helper()
	return pkix.RDNSequence{{{Type: oid, Value: value}}}
}
