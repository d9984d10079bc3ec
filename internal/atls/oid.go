package atls

import (
	"crypto/sha512"
	"encoding/asn1"
)

// The certificate-extension OIDs that carry an attestation document
// (Contrast's internal/oid). Functions rather than variables so no caller can
// change them.

// OIDSNP is the extension of an SEV-SNP attestation document.
func OIDSNP() asn1.ObjectIdentifier { return asn1.ObjectIdentifier{1, 3, 9901, 2, 1} }

// OIDTDX is the extension of a TDX attestation document.
func OIDTDX() asn1.ObjectIdentifier { return asn1.ObjectIdentifier{1, 3, 9901, 2, 2} }

// OIDInsecure is the extension of the development platform's unsigned document.
func OIDInsecure() asn1.ObjectIdentifier { return asn1.ObjectIdentifier{1, 3, 9901, 2, 3} }

// IsAttestationOID reports whether oid names an attestation-document
// extension (Contrast's attestation.IsAttestationDocumentExtension).
func IsAttestationOID(oid asn1.ObjectIdentifier) bool {
	return oid.Equal(OIDSNP()) || oid.Equal(OIDTDX()) || oid.Equal(OIDInsecure())
}

// ReportData is what the issuer must put into the evidence's 64-byte report
// data: SHA-512 over the DER SubjectPublicKeyInfo of the certificate key
// followed by the verifier's nonce (Contrast's reportdata.Construct).
func ReportData(spkiDER, nonce []byte) [64]byte {
	h := sha512.New()
	h.Write(spkiDER)
	h.Write(nonce)
	var out [64]byte
	copy(out[:], h.Sum(nil))
	return out
}
