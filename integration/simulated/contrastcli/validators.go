package contrastcli

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/asn1"
	"encoding/binary"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/google/go-sev-guest/kds"
	"github.com/google/go-sev-guest/proto/sevsnp"
	snpvalidate "github.com/google/go-sev-guest/validate"
	snpverify "github.com/google/go-sev-guest/verify"
	"github.com/google/go-tdx-guest/proto/tdx"
	tdxvalidate "github.com/google/go-tdx-guest/validate"
	tdxverify "github.com/google/go-tdx-guest/verify"
	"google.golang.org/protobuf/proto"

	"github.com/ccproxy-dev/ccproxy/attest/idblock"
	"github.com/ccproxy-dev/ccproxy/attest/snpmeasure"
	"github.com/ccproxy-dev/ccproxy/internal/atls"
)

// The CLI's aTLS error values (Contrast's internal/atls).
var (
	errNoValidAttestationExtensions = errors.New("no valid attestation document certificate extensions found")
	errNoMatchingValidators         = errors.New("no matching validators found")
)

// snpCRLExtrasKey is where a Coordinator puts the ARK-signed CRL in the SNP
// certificate chain's extras (constants.SNPCertChainExtrasCRLKey).
const snpCRLExtrasKey = "00569ee4-e480-4fba-bbf4-45b629901180"

// validator is Contrast's atls.Validator: it judges one attestation document
// against expected report data.
type validator interface {
	OID() asn1.ObjectIdentifier
	Validate(ctx context.Context, attDoc []byte, reportData []byte) error
	String() string
}

// validatorsFromManifest builds the CLI's validators from the reference values
// (sdk.ValidatorsFromManifest): one per SNP entry named snp-<i>-<PRODUCT>, one
// per TDX entry named tdx-<i>, all expecting policyHash as HOST_DATA /
// MR_CONFIG_ID.
func validatorsFromManifest(m *manifest, policyHash []byte, opts Options) ([]validator, error) {
	var vs []validator
	for i, ref := range m.ReferenceValues.SNP {
		verifyOpts, validateOpts, chipIDs, seed, err := snpOptions(ref, opts.SNPRootsPEM, opts.Online)
		if err != nil {
			return nil, fmt.Errorf("getting SNP validate options: %w", err)
		}
		// Older CLIs pass the policy hash to go-sev-guest; the newest
		// checks it after validation (policyHash nil here).
		validateOpts.HostData = policyHash
		name := fmt.Sprintf("snp-%d-%s", i, strings.TrimPrefix(verifyOpts.Product.GetName().String(), "SEV_PRODUCT_"))
		vs = append(vs, &snpValidator{verifyOpts: verifyOpts, validateOpts: validateOpts, allowedChipIDs: chipIDs, seed: seed, name: name})
	}
	var mrConfigID [48]byte
	copy(mrConfigID[:], policyHash)
	for i, ref := range m.ReferenceValues.TDX {
		verifyOpts, validateOpts, piids, err := tdxOptions(ref, opts.TDXRootsPEM, opts.Online)
		if err != nil {
			return nil, fmt.Errorf("generating TDX validation options: %w", err)
		}
		if policyHash != nil {
			validateOpts.TdQuoteBodyOptions.MrConfigID = mrConfigID[:]
		}
		vs = append(vs, &tdxValidator{verifyOpts: verifyOpts, validateOpts: validateOpts, allowedPIIDs: piids, name: fmt.Sprintf("tdx-%d", i),
			xfamIgnoringCET: m.newest()})
	}
	return vs, nil
}

// verifyEmbeddedReport is Contrast's function of the same name: the first
// validator that accepts any attestation extension wins; otherwise the error
// says whether there was no extension, no validator for it, or why each
// matching validator failed.
//
// coordinatorHashes non-nil makes it the newest CLI's CoordinatorValidator
// (internal/manifest/validators.go): the validators run without the policy
// hash, and the document a validator accepted must then carry one of these
// hashes (SNP HOST_DATA, TDX MR_CONFIG_ID[:32]), else
// "wrong policy hash for Coordinator: got <hex>, want [<hex> ...]".
func verifyEmbeddedReport(ctx context.Context, validators []validator, cert *x509.Certificate, nonce []byte, coordinatorHashes [][]byte) (retErr error) {
	spki, err := x509.MarshalPKIXPublicKey(cert.PublicKey)
	if err != nil {
		return fmt.Errorf("marshal public key: %w", err)
	}
	expected := atls.ReportData(spki, nonce)
	var foundExtension, foundMatchingValidator bool
	for _, ex := range cert.Extensions {
		if !atls.IsAttestationOID(ex.Id) {
			continue
		}
		foundExtension = true
		for _, v := range validators {
			if !ex.Id.Equal(v.OID()) {
				continue
			}
			foundMatchingValidator = true
			verr := v.Validate(ctx, ex.Value, expected[:])
			if verr == nil {
				if coordinatorHashes == nil {
					return nil
				}
				return checkCoordinatorPolicy(ex.Id, ex.Value, coordinatorHashes, nonce)
			}
			retErr = errors.Join(retErr, fmt.Errorf(" validator %s failed: %w", v.String(), verr))
		}
	}
	if !foundExtension {
		return errNoValidAttestationExtensions
	}
	if !foundMatchingValidator {
		return errNoMatchingValidators
	}
	if retErr != nil {
		retErr = fmt.Errorf("with AtlsConnectionNonce %s: %w", hex.EncodeToString(nonce), retErr)
	}
	return retErr
}

// snpValidator is Contrast's snp.Validator.
type snpValidator struct {
	verifyOpts     *snpverify.Options
	validateOpts   *snpvalidate.Options
	allowedChipIDs [][]byte
	// seed makes it Contrast's snp.IterativeValidator.
	seed *seedOptions
	name string
}

func (v *snpValidator) OID() asn1.ObjectIdentifier { return atls.OIDSNP() }
func (v *snpValidator) String() string             { return v.name }

func (v *snpValidator) Validate(ctx context.Context, attDoc []byte, reportData []byte) error {
	att := &sevsnp.Attestation{}
	if err := proto.Unmarshal(attDoc, att); err != nil {
		return fmt.Errorf("unmarshaling attestation: %w", err)
	}
	if att.Report == nil {
		return errors.New("attestation missing report")
	}
	// Like the CLI, use the CRL the Coordinator attached; a missing one only
	// matters when revocations are checked, and then the KDS is asked.
	addCRLToVerifyOptions(att, v.verifyOpts)
	if err := snpverify.SnpAttestationContext(ctx, att, v.verifyOpts); err != nil {
		return fmt.Errorf("verifying report: %w", err)
	}
	opts := *v.validateOpts
	opts.ReportData = reportData
	if v.seed != nil {
		matched := false
		for n, d := range snpmeasure.Digests(v.seed.seed, v.seed.apEIP, v.seed.sig, snpmeasure.MaxVCPUs) {
			if !bytes.Equal(att.Report.GetMeasurement(), d[:]) {
				continue
			}
			digest, err := idblock.IDKeyDigest(d, opts.GuestPolicy)
			if err != nil {
				return fmt.Errorf("generating ID blocks for %d vCPUs: %w", n, err)
			}
			opts.Measurement = d[:]
			opts.TrustedIDKeyHashes = [][]byte{digest[:]}
			matched = true
			break
		}
		if !matched {
			return errors.New("measurement does not match any vCPU count from 1 to 220")
		}
	}
	if err := snpvalidate.SnpAttestation(att, &opts); err != nil {
		return fmt.Errorf("validating report claims: %w", err)
	}
	if len(v.allowedChipIDs) != 0 {
		chipID := att.Report.GetChipId()
		if !slices.ContainsFunc(v.allowedChipIDs, func(id []byte) bool { return bytes.Equal(id, chipID) }) {
			return fmt.Errorf("chip ID %x not in allowed chip IDs", chipID)
		}
	}
	return nil
}

func addCRLToVerifyOptions(att *sevsnp.Attestation, opts *snpverify.Options) {
	raw, ok := att.GetCertificateChain().GetExtras()[snpCRLExtrasKey]
	if !ok || opts.TrustedRoots == nil {
		return
	}
	crl, err := x509.ParseRevocationList(raw)
	if err != nil {
		return
	}
	line := kds.ProductLine(att.GetProduct())
	if fms := att.GetReport().GetCpuid1EaxFms(); fms != 0 {
		line = kds.ProductLineFromFms(fms)
	}
	for _, r := range opts.TrustedRoots[line] {
		r.Mu.Lock()
		r.CRL = crl
		r.Mu.Unlock()
	}
}

// tdxValidator is Contrast's tdx.Validator.
type tdxValidator struct {
	verifyOpts   func() (*tdxverify.Options, error)
	validateOpts *tdxvalidate.Options
	allowedPIIDs [][]byte
	name         string
	// xfamIgnoringCET: the newest CLI compares XFAM itself, ignoring the
	// CET bits, before go-tdx-guest's call (which then skips XFAM).
	xfamIgnoringCET bool
}

func (v *tdxValidator) OID() asn1.ObjectIdentifier { return atls.OIDTDX() }
func (v *tdxValidator) String() string             { return v.name }

func (v *tdxValidator) Validate(_ context.Context, attDoc []byte, reportData []byte) error {
	quote := &tdx.QuoteV4{}
	if err := proto.Unmarshal(attDoc, quote); err != nil {
		return fmt.Errorf("unmarshaling attestation: %w", err)
	}
	verifyOpts, err := v.verifyOpts()
	if err != nil {
		return fmt.Errorf("verifying report signature: %w", err)
	}
	if err := tdxverify.TdxQuote(quote, verifyOpts); err != nil {
		return fmt.Errorf("verifying report signature: %w", err)
	}
	opts := *v.validateOpts
	opts.TdQuoteBodyOptions.ReportData = reportData
	if ref := opts.TdQuoteBodyOptions.Xfam; v.xfamIgnoringCET && ref != nil {
		if err := validateXfamIgnoringCET(quote.GetTdQuoteBody().GetXfam(), ref); err != nil {
			return fmt.Errorf("validating xfam: %w", err)
		}
		opts.TdQuoteBodyOptions.Xfam = nil
	}
	if err := tdxvalidate.TdxQuote(quote, &opts); err != nil {
		return fmt.Errorf("validating report data: %w", err)
	}
	if len(v.allowedPIIDs) != 0 {
		piid, err := quotePIID(quote)
		if err != nil {
			return fmt.Errorf("reading PIID from quote: %w", err)
		}
		if !slices.ContainsFunc(v.allowedPIIDs, func(id []byte) bool { return bytes.Equal(id, piid) }) {
			return fmt.Errorf("PIID %x not in allowed PIIDs", piid)
		}
	}
	return nil
}

// xfamCETMask covers XFAM's CET bits: CET_U (11) and CET_S (12), which
// QEMU sets on hosts whose CPU supports CET.
const xfamCETMask = uint64(1)<<11 | uint64(1)<<12

// validateXfamIgnoringCET is the newest CLI's XFAM comparison
// (internal/attestation/tdx/validator.go), with its texts.
func validateXfamIgnoringCET(quoteXfam, refXfam []byte) error {
	const xfamSize = 8
	if len(quoteXfam) != xfamSize {
		return fmt.Errorf("quote XFAM has length %d, want %d", len(quoteXfam), xfamSize)
	}
	if len(refXfam) != xfamSize {
		return fmt.Errorf("reference XFAM has length %d, want %d", len(refXfam), xfamSize)
	}
	if binary.LittleEndian.Uint64(quoteXfam)&^xfamCETMask != binary.LittleEndian.Uint64(refXfam)&^xfamCETMask {
		return fmt.Errorf("XFAM mismatch: got %x, want %x (ignoring CET bits)", quoteXfam, refXfam)
	}
	return nil
}

// quotePIID reads the platform instance ID from the PCK certificate in the
// quote's certification data.
func quotePIID(quote *tdx.QuoteV4) ([]byte, error) {
	chain := quote.GetSignedData().GetCertificationData().GetQeReportCertificationData().GetPckCertificateChainData().GetPckCertChain()
	block, _ := pem.Decode(chain)
	if block == nil {
		return nil, errors.New("extracting PCK certificate: no PEM certificate in chain")
	}
	pck, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("extracting PCK certificate: %w", err)
	}
	return piidFromPCK(pck)
}

// sgxExtensionOID is Intel's SGX extension in PCK certificates.
func sgxExtensionOID() asn1.ObjectIdentifier {
	return asn1.ObjectIdentifier{1, 2, 840, 113741, 1, 13, 1}
}

// piidOID is the SGX extension's PlatformInstanceID entry (16-byte OCTET
// STRING, multi-package platforms only).
func piidOID() asn1.ObjectIdentifier { return asn1.ObjectIdentifier{1, 2, 840, 113741, 1, 13, 1, 6} }

type sgxExtensionEntry struct {
	ID    asn1.ObjectIdentifier
	Value asn1.RawValue
}

// piidFromPCK extracts the PIID from a PCK certificate's SGX extension.
func piidFromPCK(pck *x509.Certificate) ([]byte, error) {
	for _, ext := range pck.Extensions {
		if !ext.Id.Equal(sgxExtensionOID()) {
			continue
		}
		return piidFromSGXExtension(ext.Value)
	}
	return nil, errors.New("extracting PCK certificate extensions: no SGX extension")
}

func piidFromSGXExtension(der []byte) ([]byte, error) {
	var entries []sgxExtensionEntry
	rest, err := asn1.Unmarshal(der, &entries)
	if err != nil {
		return nil, fmt.Errorf("extracting PCK certificate extensions: %w", err)
	}
	if len(rest) != 0 {
		return nil, errors.New("extracting PCK certificate extensions: trailing data")
	}
	for _, e := range entries {
		if !e.ID.Equal(piidOID()) {
			continue
		}
		if e.Value.Class != asn1.ClassUniversal || e.Value.Tag != asn1.TagOctetString {
			return nil, errors.New("decoding PIID from extension: not an OCTET STRING")
		}
		const piidLen = 16
		if len(e.Value.Bytes) != piidLen {
			return nil, fmt.Errorf("unexpected PIID length of %d, want %d", len(e.Value.Bytes), piidLen)
		}
		return bytes.Clone(e.Value.Bytes), nil
	}
	return nil, errors.New("extracting PCK certificate extensions: no PIID")
}

// errWrongCoordinatorPolicyHash is manifest.ErrWrongCoordinatorPolicyHash.
var errWrongCoordinatorPolicyHash = errors.New("wrong policy hash for Coordinator")

// checkCoordinatorPolicy is the post-validation step of the newest CLI's
// coordinatorValidator: the accepted report's HostData (SNP HOST_DATA, TDX
// MR_CONFIG_ID's first 32 bytes) must be one of the manifest's Coordinator
// policy hashes. The hashes print as Go prints a []HexString: [a b].
func checkCoordinatorPolicy(oid asn1.ObjectIdentifier, doc []byte, hashes [][]byte, nonce []byte) error {
	var got []byte
	switch {
	case oid.Equal(atls.OIDSNP()):
		att := &sevsnp.Attestation{}
		if err := proto.Unmarshal(doc, att); err != nil {
			return fmt.Errorf("unmarshaling attestation: %w", err)
		}
		got = att.GetReport().GetHostData()
	case oid.Equal(atls.OIDTDX()):
		quote := &tdx.QuoteV4{}
		if err := proto.Unmarshal(doc, quote); err != nil {
			return fmt.Errorf("unmarshaling attestation: %w", err)
		}
		id := quote.GetTdQuoteBody().GetMrConfigId()
		if len(id) < 32 {
			return errors.New("validator did not produce a report")
		}
		got = id[:32]
	default:
		return nil
	}
	want := make([]string, len(hashes))
	for i, h := range hashes {
		if bytes.Equal(h, got) {
			return nil
		}
		want[i] = hex.EncodeToString(h)
	}
	return fmt.Errorf("with AtlsConnectionNonce %s: %w: got %x, want %v", hex.EncodeToString(nonce), errWrongCoordinatorPolicyHash, got, want)
}
