// Package attesttest signs fake SEV-SNP and TDX evidence that package attest
// verifies when it is told to trust this package's roots. It exists for
// tests, the integration suite and the demo's simulated Coordinator; it is
// never imported by attest, the relay or the probe, and its roots are
// trusted only when passed explicitly (Options.SNPRoots / Options.TDXRoots,
// --snp-trusted-roots / --tdx-trusted-roots).
//
//	a, _ := attesttest.NewAuthority()
//	doc, _ := a.SNP(attesttest.Evidence{ReportData: attest.ReportData(spki, nonce)})
//	m, _ := attest.ParseManifest(a.ManifestJSON())
//	res := attest.CheckFile(ctx, doc, attest.Options{SNPRoots: a.SNPRootsPEM(), Reference: m, Offline: true})
//
// The AMD side reuses go-sev-guest's fixed test keys (testing/data), so an
// Authority is cheap to build; the Intel side is a fresh ECDSA hierarchy
// named like Intel's (the names are what go-tdx-guest checks). Certificates
// are valid from 2000 to 2099 so tests may pin any reasonable clock.
package attesttest

import (
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"time"

	"github.com/ccproxy-dev/ccproxy/attest/snpmeasure"
)

// Platform names, equal to attest.PlatformSNP / PlatformTDX (repeated here
// because attest must not depend on this package and this package need not
// depend on attest).
const (
	platformSNP = "snp"
	platformTDX = "tdx"
)

// Validity of every certificate this package issues: wide and fixed, so the
// evidence verifies whatever clock a test pins.
var (
	validFrom  = time.Date(2000, time.January, 1, 0, 0, 0, 0, time.UTC)
	validUntil = time.Date(2099, time.December, 31, 23, 59, 59, 0, time.UTC)
)

// Evidence describes one piece of evidence to sign. Zero PolicyHash and
// Measurement mean DefaultPolicyHash and DefaultMeasurement, so
// Evidence{ReportData: rd} is evidence the default manifest accepts.
type Evidence struct {
	// ReportData is SNP REPORT_DATA / TDX REPORTDATA; attest.ReportData
	// computes what Contrast puts there.
	ReportData [64]byte
	// PolicyHash is SNP HOST_DATA / the first 32 bytes of TDX MR_CONFIG_ID.
	PolicyHash [32]byte
	// Measurement is SNP MEASUREMENT / TDX MRTD.
	Measurement [48]byte
	// TCBLow reports a TCB below the default reference minimum: the SNP SNP
	// firmware SVN, or the TDX TEE_TCB_SVN (which only the older manifest
	// spelling, LegacyManifestJSON, constrains).
	TCBLow bool
	// BadSignature corrupts the report / quote signature after signing.
	BadSignature bool

	// VCPUs, when set, makes the SNP MEASUREMENT that of a VM with that
	// many vCPUs: Measurement (or DefaultMeasurement) is its 1-vCPU seed,
	// extended by AP VMSA pages with SeedAPEIP and the Milan CPU signature,
	// as the newest manifests (SeedManifestJSON) expect.
	VCPUs int
	// UntrustedIDKey launches the SNP VM with an ID block signed by another
	// key than the one Contrast derives from its measurement and policy.
	UntrustedIDKey bool
	// NoIDBlock launches the SNP VM without an ID block (ID_KEY_DIGEST zero).
	NoIDBlock bool
	// OtherChip signs the SNP report on another chip, whose CHIP_ID (and
	// VCEK) is not in the default manifest's AllowedChipIDs.
	OtherChip bool
	// WrongMRSEAM and WrongXFAM report a TDX module measurement / XFAM
	// other than the default manifest's.
	WrongMRSEAM, WrongXFAM bool
	// XFAMCETOnly reports an XFAM that differs from the manifest's only in
	// the CET bits (11 and 12, CET_U and CET_S).
	XFAMCETOnly bool
	// MRConfigIDTail puts non-zero bytes into the last 16 bytes of the TDX
	// MR_CONFIG_ID, after the 32-byte policy hash.
	MRConfigIDTail bool
}

func (e Evidence) policyHash() [32]byte {
	if e.PolicyHash == ([32]byte{}) {
		return DefaultPolicyHash()
	}
	return e.PolicyHash
}

func (e Evidence) measurement() [48]byte {
	if e.Measurement == ([48]byte{}) {
		return DefaultMeasurement()
	}
	return e.Measurement
}

// SeedAPEIP is the AP reset EIP SeedManifestJSON names (big endian there),
// the value OVMF's AmdSev build places its SEV-ES reset block at.
const SeedAPEIP = 0x0080b004

// snpMeasurement is the SNP MEASUREMENT the evidence reports.
func (e Evidence) snpMeasurement() ([48]byte, error) {
	m := e.measurement()
	if e.VCPUs == 0 {
		return m, nil
	}
	sig, err := snpmeasure.ProductSignature(snpProductLine)
	if err != nil {
		return m, err
	}
	return snpmeasure.Digest(m, e.VCPUs, SeedAPEIP, sig)
}

// DefaultMeasurement is the launch measurement (SNP MEASUREMENT, TDX MRTD)
// that the default evidence carries and the default manifest expects.
func DefaultMeasurement() [48]byte {
	return sha512.Sum384([]byte("ccproxy attesttest launch measurement"))
}

// DefaultPolicyHash is the Coordinator policy hash that the default evidence
// carries and the default manifest names as the coordinator policy.
func DefaultPolicyHash() [32]byte {
	return sha256.Sum256([]byte("ccproxy attesttest coordinator policy"))
}

// Authority holds a fake AMD hierarchy (ARK → ASK → VCEK, Milan) and a fake
// Intel one (SGX root → PCK platform CA → PCK certificate, plus a quoting
// enclave attestation key). Methods are safe for concurrent use.
type Authority struct {
	snp *snpAuthority
	tdx *tdxAuthority
}

// NewAuthority builds both hierarchies.
func NewAuthority() (*Authority, error) {
	s, err := newSNPAuthority()
	if err != nil {
		return nil, fmt.Errorf("building fake AMD hierarchy: %w", err)
	}
	t, err := newTDXAuthority()
	if err != nil {
		return nil, fmt.Errorf("building fake Intel hierarchy: %w", err)
	}
	return &Authority{snp: s, tdx: t}, nil
}

// SNPRootsPEM returns the fake ASK and ARK in AMD KDS cert_chain order (ASK
// first), the format --snp-trusted-roots takes.
func (a *Authority) SNPRootsPEM() []byte { return a.snp.rootsPEM() }

// TDXRootsPEM returns the fake "Intel SGX Root CA" certificate.
func (a *Authority) TDXRootsPEM() []byte { return a.tdx.rootPEM() }

// ChipID is the CHIP_ID the fake VCEK certifies and every SNP report carries.
func (a *Authority) ChipID() [64]byte { return a.snp.chipID }

// PIID is the platform instance ID in the fake PCK certificate.
func (a *Authority) PIID() [16]byte { return a.tdx.piid }

// SNP returns a signed sevsnp.Attestation protobuf (report plus VCEK, ASK and
// ARK), the value of the 1.3.9901.2.1 certificate extension.
func (a *Authority) SNP(e Evidence) ([]byte, error) { return a.snp.attestation(e) }

// SNPReport returns only the raw 1184-byte signed report, the oldest
// Contrast extension format (it carries no VCEK, so it verifies only online).
func (a *Authority) SNPReport(e Evidence) ([]byte, error) { return a.snp.rawReport(e) }

// TDX returns a signed tdx.QuoteV4 protobuf with its PCK chain, the value of
// the 1.3.9901.2.2 certificate extension.
func (a *Authority) TDX(e Evidence) ([]byte, error) { return a.tdx.quoteProto(e) }

// TDXQuote returns the same quote as raw Intel quote bytes (what a TDX guest
// writes to a file).
func (a *Authority) TDXQuote(e Evidence) ([]byte, error) { return a.tdx.quoteRaw(e) }

// Insecure returns the document of Contrast's insecure platform (JSON with
// base64 ReportData and HostData), the value of the 1.3.9901.2.3 extension.
// Only ReportData and PolicyHash are used.
func Insecure(e Evidence) []byte {
	h := e.policyHash()
	doc, _ := json.Marshal(struct {
		ReportData string `json:"reportData"`
		HostData   string `json:"hostData"`
	}{
		ReportData: base64.StdEncoding.EncodeToString(e.ReportData[:]),
		HostData:   base64.StdEncoding.EncodeToString(h[:]),
	})
	return doc
}

// Certificate returns a certificate like a Contrast Coordinator's aTLS
// certificate: self-signed by key, subject CN Contrast, valid from issued−2h
// to issued+2h (issued is the Coordinator's clock), with value in extension
// oid (none when oid is nil). The evidence in value should carry
// attest.ReportData(certificate SPKI, client nonce) to verify.
func Certificate(key crypto.Signer, oid asn1.ObjectIdentifier, value []byte, issued time.Time) (*x509.Certificate, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "Contrast"},
		NotBefore:    issued.Add(-2 * time.Hour),
		NotAfter:     issued.Add(2 * time.Hour),
	}
	if oid != nil {
		tmpl.ExtraExtensions = []pkix.Extension{{Id: oid, Value: value}}
	}
	return issue(tmpl, tmpl, key.Public(), key)
}
