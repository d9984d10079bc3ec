// Package attest decodes, verifies and validates the attestation evidence a
// Contrast Coordinator puts in its attested-TLS certificate, the way the
// Contrast CLI does, and names what differs as exactly one failure mode.
//
//	m, err := attest.LoadManifest("manifest.json")
//	...
//	res := attest.CheckCertificate(ctx, cert, attest.Options{Reference: m, Nonce: nonce})
//	fmt.Println(res.Verdict, res.Mode, res.Detail) // verified ok / rejected policy_hash_mismatch ...
//
// Like go-sev-guest it works in three layers: decode (certificate
// extension → SEV-SNP attestation, TDX quote or insecure document), verify
// (signature and certificate chain, with go-sev-guest / go-tdx-guest only) and
// validate (reference values from a Contrast manifest.json). The modes:
//
//	clock_skew               the certificate is not valid at Options.Now (Coordinator clock off by > 2 h)
//	unexpected_certificate   no Contrast attestation extension in the certificate
//	no_matching_validator    evidence for a platform the manifest has no reference values for
//	evidence_invalid         undecodable, oversized, bad signature, chain or revocation, or
//	                         inconsistent with its own certificates (REPORTED_TCB vs VCEK, CHIP_ID
//	                         vs VCEK, QE vendor)
//	report_data_mismatch     REPORT_DATA ≠ SHA-512(certificate public key ‖ nonce)
//	policy_hash_mismatch     HOST_DATA / MR_CONFIG_ID ≠ the Coordinator policy hash
//	measurement_mismatch     MEASUREMENT (exact, or a 1-vCPU seed extended to 1–220 vCPUs), MRTD, RTMRs
//	reference_value_mismatch another claim the CLI checks: guest policy, ID key (ID block), VMPL,
//	                         platform info, allowed chip IDs; MRSEAM, XFAM, TD attributes, PIIDs,
//	                         PCK platform options
//	tcb_mismatch             minimum TCB (current and launch) / SVNs, mitigation vector
//
// When several checks fail, the first in the order the Contrast CLI of the
// manifest's era makes them names the mode, as that is the failure the CLI
// prints first: the certificate's own x509 check, then every attestation
// extension; per evidence the field order of go-sev-guest / go-tdx-guest's
// validation, the measurement first for a vCPU-seed manifest, and the
// Coordinator policy hash either among the fields (older CLIs) or last
// (the newest). docs/conformance.md, "The order of the checks", has the
// table; ManifestError is a manifest that CLI refuses before it dials.
//
// Each mode is decided by the field compared, never by a library's wording;
// the CLI's own library call with all its options then runs as a last check,
// so nothing the CLI rejects passes here. The verdict is verified only when
// every check the CLI makes was made: offline without collateral or a
// fresh CRL, or without a policy hash, it is unverified with the reason in
// the "Unverified: not checked" field (docs/conformance.md lists each check).
//
// With several reference-value entries for a platform (Contrast accepts the
// evidence if any entry matches), the entry that got furthest names the mode.
// Package attest never writes to standard output: the TDX root of trust is
// always passed to go-tdx-guest explicitly so it does not print its
// "Using embedded Intel certificate" warning.
package attest

import (
	"bytes"
	"context"
	"crypto/sha512"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/ccproxy-dev/ccproxy/internal/failure"
)

// Platform names as they appear in traces (attest.platform).
const (
	PlatformSNP      = "snp"
	PlatformTDX      = "tdx"
	PlatformInsecure = "insecure"
)

// OIDs of the certificate extensions that carry Contrast attestation
// documents (Contrast internal/oid).
var (
	OIDSNP      = asn1.ObjectIdentifier{1, 3, 9901, 2, 1}
	OIDTDX      = asn1.ObjectIdentifier{1, 3, 9901, 2, 2}
	OIDInsecure = asn1.ObjectIdentifier{1, 3, 9901, 2, 3}
)

// MaxEvidenceSize bounds what is decoded: a real SNP attestation with its
// chain is about 5 KiB, a TDX quote with chain and collateral tens of KiB.
const MaxEvidenceSize = 1 << 20

// CertificateMargin is how far a Contrast Coordinator backdates its
// certificates: each is valid from now−2h to now+2h of its issuer's clock.
const CertificateMargin = 2 * time.Hour

// Verdict summarizes how far the evidence was checked (attest.verdict).
type Verdict string

const (
	// Verified: signature, chain, every configured reference value, the
	// Coordinator policy hash and (with a nonce) the report data were checked
	// and matched.
	Verified Verdict = "verified"
	// Rejected: a check failed (Result.Mode says which).
	Rejected Verdict = "rejected"
	// Unverified: nothing failed, but not everything could be checked (no
	// reference values, no policy hash, the insecure platform, or offline
	// without the certificates the evidence needs).
	Unverified Verdict = "unverified"
)

// Options configures a check. The zero value verifies signature and chain
// online against the vendors' roots and checks no reference values.
type Options struct {
	// Offline never fetches certificates, CRLs or collateral: verification
	// uses what the evidence carries (and a CRL only when the evidence
	// carries a fresh one).
	Offline bool
	// SNPRoots replaces AMD's roots: PEM with the ARK and ASK (AMD KDS
	// cert_chain format) per product line. An ARK alone is accepted; the ASK
	// is then taken from the evidence if the ARK signed it.
	SNPRoots []byte
	// TDXRoots replaces the Intel SGX root CA: PEM certificates.
	TDXRoots []byte
	// Reference holds the reference values; nil checks none.
	Reference *Manifest
	// PolicyHashes are the expected Coordinator policy hashes (32 bytes
	// each). Nil takes them from Reference (policies with Role coordinator).
	PolicyHashes [][]byte
	// Nonce is the verifier's 32-byte nonce; nil leaves the report data
	// unchecked.
	Nonce []byte
	// SPKI is the DER SubjectPublicKeyInfo the report data binds. Checking a
	// certificate takes it from the certificate; set it to check report data
	// of raw evidence.
	SPKI []byte
	// Now is the time certificates are checked at; nil means time.Now.
	Now func() time.Time
	// Cache keeps what online verification fetched (AMD KDS, Intel PCS)
	// across checks; nil fetches afresh for every check.
	Cache *Cache
	// HTTPClient fetches online; nil uses a client with a 20 s timeout.
	HTTPClient *http.Client
}

func (o Options) now() time.Time {
	if o.Now == nil {
		return time.Now()
	}
	return o.Now()
}

// Validate reports configuration errors: roots that do not parse, policy
// hashes or a nonce of the wrong length. Check functions treat an invalid
// configuration as evidence they cannot verify; callers that take options
// from users should call Validate first.
func (o Options) Validate() error {
	var errs []error
	if o.SNPRoots != nil {
		if _, err := parseSNPRoots(o.SNPRoots); err != nil {
			errs = append(errs, fmt.Errorf("SNP trusted roots: %w", err))
		}
	}
	if o.TDXRoots != nil {
		if _, err := parseTDXRoots(o.TDXRoots); err != nil {
			errs = append(errs, fmt.Errorf("TDX trusted roots: %w", err))
		}
	}
	for i, h := range o.PolicyHashes {
		if len(h) != 32 {
			errs = append(errs, fmt.Errorf("policy hash %d is %d bytes, want 32", i, len(h)))
		}
	}
	if o.Nonce != nil && len(o.Nonce) != 32 {
		errs = append(errs, fmt.Errorf("nonce is %d bytes, want 32", len(o.Nonce)))
	}
	return errors.Join(errs...)
}

// Field is one decoded or derived value, for printing.
type Field struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// Result is the outcome of one check.
type Result struct {
	Platform string       `json:"platform,omitempty"`
	Product  string       `json:"product,omitempty"`
	Verdict  Verdict      `json:"verdict"`
	Mode     failure.Mode `json:"failure_mode"`
	// Detail is one sentence naming the field with its observed and expected
	// values; empty when Mode is OK.
	Detail             string `json:"failure_detail,omitempty"`
	PolicyHash         string `json:"policy_hash,omitempty"`
	ExpectedPolicyHash string `json:"expected_policy_hash,omitempty"`
	// ClockOffset is the Coordinator's clock minus Options.Now, from the
	// certificate's validity; nil when no certificate was seen.
	ClockOffset *time.Duration `json:"-"`
	// Fields are the decoded values in print order.
	Fields []Field `json:"fields,omitempty"`
}

// ReportData is what Contrast puts in REPORT_DATA: SHA-512 of the DER
// SubjectPublicKeyInfo of the certificate key followed by the nonce.
func ReportData(spkiDER, nonce []byte) [64]byte {
	b := make([]byte, 0, len(spkiDER)+len(nonce))
	b = append(append(b, spkiDER...), nonce...)
	return sha512.Sum512(b)
}

// attestationExtensions returns cert's extensions that carry a Contrast
// attestation document (SNP, TDX or insecure OID), in certificate order.
func attestationExtensions(cert *x509.Certificate) []pkix.Extension {
	var out []pkix.Extension
	for _, ext := range cert.Extensions {
		if ext.Id.Equal(OIDSNP) || ext.Id.Equal(OIDTDX) || ext.Id.Equal(OIDInsecure) {
			out = append(out, ext)
		}
	}
	return out
}

// firstAccepted picks the result of a certificate with several attestation
// extensions the way Contrast's verifyEmbeddedReport decides: any extension
// a validator accepts makes the certificate accepted; otherwise the CLI
// prints the failures of the validators that ran, in certificate order,
// and "no matching validators found" only when no extension had one. The
// first printed failure is the one named.
func firstAccepted(results []Result) Result {
	for _, r := range results {
		if r.Mode == failure.OK {
			return r
		}
	}
	for _, r := range results {
		if r.Mode != failure.NoMatchingValidator {
			return r
		}
	}
	return results[0]
}

// FindExtension returns the first extension of cert that carries a Contrast
// attestation document (SNP, TDX or insecure OID).
func FindExtension(cert *x509.Certificate) (oid asn1.ObjectIdentifier, value []byte, ok bool) {
	if cert == nil {
		return nil, nil, false
	}
	for _, ext := range cert.Extensions {
		if ext.Id.Equal(OIDSNP) || ext.Id.Equal(OIDTDX) || ext.Id.Equal(OIDInsecure) {
			return ext.Id, ext.Value, true
		}
	}
	return nil, nil, false
}

// CheckCertificate checks a Coordinator's aTLS certificate as Contrast's
// client does: its validity at Options.Now (which also gives the
// Coordinator's clock offset), x509 verification as a self-signed
// certificate, and the evidence in its attestation extension, bound to the
// certificate's key.
func CheckCertificate(ctx context.Context, cert *x509.Certificate, opts Options) Result {
	if cert == nil {
		return Result{Verdict: Rejected, Mode: failure.UnexpectedCertificate, Detail: "no certificate was presented"}
	}
	now := opts.now()
	// The Coordinator issues at NotBefore + margin of its own clock.
	offset := cert.NotBefore.Add(CertificateMargin).Sub(now)
	certFields := []Field{
		{"Certificate subject", cert.Subject.String()},
		{"Certificate validity", fmt.Sprintf("%s to %s", cert.NotBefore.UTC().Format(time.RFC3339), cert.NotAfter.UTC().Format(time.RFC3339))},
		{"Coordinator clock offset", signedDuration(offset)},
	}

	// Contrast's client (internal/atls processCertificate, then
	// verifyEmbeddedReport): the x509 check with the certificate as its own
	// root comes first, whatever the extensions; then every extension with
	// an attestation OID is tried with every validator for its OID, and
	// the first that passes wins.
	var res Result
	exts := attestationExtensions(cert)
	selfErr := verifySelfSigned(cert)
	switch {
	case selfErr != nil:
		res = Result{
			Verdict: Rejected,
			Mode:    failure.EvidenceInvalid,
			Detail:  fmt.Sprintf("clients reject the certificate before looking at its evidence: %v", selfErr),
		}
		if len(exts) > 0 {
			res.Platform = platformOf(exts[0].Id)
		}
	case len(exts) == 0:
		res = Result{
			Verdict: Rejected,
			Mode:    failure.UnexpectedCertificate,
			Detail: fmt.Sprintf("the certificate (subject %q) carries no attestation-document extension (%s, %s or %s); its extensions are %s",
				cert.Subject.String(), OIDSNP, OIDTDX, OIDInsecure, extensionList(cert)),
		}
	default:
		o := opts
		if o.SPKI == nil {
			// Contrast binds the re-marshaled public key, not the raw bytes.
			spki, err := x509.MarshalPKIXPublicKey(cert.PublicKey)
			if err != nil {
				spki = cert.RawSubjectPublicKeyInfo
			}
			o.SPKI = spki
		}
		results := make([]Result, len(exts))
		for i, ext := range exts {
			results[i] = checkExtension(ctx, ext.Id, ext.Value, o)
		}
		res = firstAccepted(results)
	}
	res.ClockOffset = &offset
	res.Fields = append(certFields, res.Fields...)

	// The client checks the certificate's validity before anything else, so
	// a skewed clock hides every evidence result.
	if now.Before(cert.NotBefore) || now.After(cert.NotAfter) {
		if res.Mode != failure.OK {
			res.Fields = append(res.Fields, Field{"Evidence result (hidden by the clock skew)", fmt.Sprintf("%s: %s", res.Mode, res.Detail)})
		} else {
			res.Fields = append(res.Fields, Field{"Evidence result (hidden by the clock skew)", string(failure.OK)})
		}
		res.Mode = failure.ClockSkew
		res.Verdict = Rejected
		res.Detail = clockSkewDetail(offset)
	}
	return res
}

// CheckCertificateDER is CheckCertificate for a certificate as it came on
// the wire (a relay sees TLS 1.2 certificates as DER): one that does not
// parse is evidence_invalid, as it is for a client.
func CheckCertificateDER(ctx context.Context, der []byte, opts Options) Result {
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return Result{Verdict: Rejected, Mode: failure.EvidenceInvalid, Detail: "The server certificate does not parse: " + err.Error()}
	}
	return CheckCertificate(ctx, cert, opts)
}

// verifySelfSigned runs the check Contrast's client runs on the certificate
// (x509 verification with the certificate as its own root), at a time inside
// its validity: the clock is judged separately.
func verifySelfSigned(cert *x509.Certificate) error {
	roots := x509.NewCertPool()
	roots.AddCert(cert)
	_, err := cert.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: cert.NotBefore})
	return err
}

func clockSkewDetail(offset time.Duration) string {
	dir := "ahead of"
	if offset < 0 {
		dir, offset = "behind", -offset
	}
	return fmt.Sprintf("Coordinator clock is %s %s this host; clients reject its certificate beyond %s",
		shortDuration(offset), dir, shortDuration(CertificateMargin))
}

// CheckFile checks evidence from a file: a PEM or DER certificate (as
// CheckCertificate), a sevsnp.Attestation or tdx.QuoteV4 protobuf, a raw SNP
// report (optionally followed by its certificate table), a raw Intel TDX
// quote, or an insecure-platform document.
func CheckFile(ctx context.Context, data []byte, opts Options) Result {
	if len(data) > MaxEvidenceSize {
		return Result{Verdict: Rejected, Mode: failure.EvidenceInvalid,
			Detail: fmt.Sprintf("the input is %d bytes, more than the %d-byte limit for evidence", len(data), MaxEvidenceSize)}
	}
	// Only a file that is PEM: protobuf evidence embeds PEM chains.
	if bytes.HasPrefix(bytes.TrimSpace(data), []byte("-----BEGIN")) {
		block, _ := pem.Decode(data)
		if block == nil {
			return Result{Verdict: Rejected, Mode: failure.EvidenceInvalid, Detail: "the input starts like PEM but does not decode as PEM"}
		}
		if block.Type != "CERTIFICATE" {
			return Result{Verdict: Rejected, Mode: failure.EvidenceInvalid,
				Detail: fmt.Sprintf("the input is a PEM %q block; expected a CERTIFICATE or raw evidence", block.Type)}
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return Result{Verdict: Rejected, Mode: failure.EvidenceInvalid,
				Detail: fmt.Sprintf("the PEM certificate does not parse: %v", err)}
		}
		return CheckCertificate(ctx, cert, opts)
	}
	if cert, err := x509.ParseCertificate(data); err == nil {
		return CheckCertificate(ctx, cert, opts)
	}
	ev, err := decodeFile(data)
	if err != nil {
		return Result{Verdict: Rejected, Mode: failure.EvidenceInvalid, Detail: err.Error()}
	}
	return checkEvidence(ctx, ev, opts)
}

func checkExtension(ctx context.Context, oid asn1.ObjectIdentifier, value []byte, opts Options) Result {
	ev, err := decodeExtension(oid, value)
	if err != nil {
		return Result{Platform: platformOf(oid), Verdict: Rejected, Mode: failure.EvidenceInvalid, Detail: err.Error()}
	}
	return checkEvidence(ctx, ev, opts)
}

func platformOf(oid asn1.ObjectIdentifier) string {
	switch {
	case oid.Equal(OIDSNP):
		return PlatformSNP
	case oid.Equal(OIDTDX):
		return PlatformTDX
	case oid.Equal(OIDInsecure):
		return PlatformInsecure
	}
	return ""
}

func extensionList(cert *x509.Certificate) string {
	if len(cert.Extensions) == 0 {
		return "none"
	}
	s := ""
	for i, ext := range cert.Extensions {
		if i > 0 {
			s += ", "
		}
		s += ext.Id.String()
	}
	return s
}
