package attest

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/ccproxy-dev/ccproxy/attest/idblock"
	"github.com/ccproxy-dev/ccproxy/attest/snpmeasure"
	"github.com/ccproxy-dev/ccproxy/internal/failure"
	"github.com/google/go-sev-guest/abi"
	"github.com/google/go-sev-guest/kds"
	spb "github.com/google/go-sev-guest/proto/sevsnp"
	"github.com/google/go-sev-guest/validate"
	"github.com/google/go-sev-guest/verify"
	"github.com/google/go-sev-guest/verify/trust"
	"google.golang.org/protobuf/proto"
)

// snpCRLKey is where a Contrast issuer puts the ARK-signed CRL in the
// certificate chain's extras (Contrast constants.SNPCertChainExtrasCRLKey).
const snpCRLKey = "00569ee4-e480-4fba-bbf4-45b629901180"

// snpDecoded is what the checks need beyond the protobuf.
type snpDecoded struct {
	product string // e.g. Milan-B0
	line    string // product line, e.g. Milan; empty if unknown
	signer  abi.ReportSigner
	ek      *x509.Certificate // VCEK or VLEK from the evidence
	ekErr   error             // why the evidence's VCEK or VLEK does not parse
	ask     *x509.Certificate
	crl     *x509.RevocationList
}

func decodeSNPFields(att *spb.Attestation) (snpDecoded, []Field) {
	r := att.GetReport()
	chain := att.GetCertificateChain()
	var d snpDecoded
	if info, err := abi.ParseSignerInfo(r.GetSignerInfo()); err == nil {
		d.signer = info.SigningKey
	}
	ekDER, ekName := chain.GetVcekCert(), "VCEK"
	if d.signer == abi.VlekReportSigner {
		ekDER, ekName = chain.GetVlekCert(), "VLEK"
	}
	if len(ekDER) > 0 {
		d.ek, d.ekErr = x509.ParseCertificate(ekDER)
	}
	if len(chain.GetAskCert()) > 0 {
		d.ask, _ = x509.ParseCertificate(chain.GetAskCert())
	}
	if raw, ok := chain.GetExtras()[snpCRLKey]; ok {
		d.crl, _ = x509.ParseRevocationList(raw)
	}

	// The product: from CPUID in v3+ reports, else the VCEK's product name,
	// else what the attestation claims.
	var product *spb.SevProduct
	switch {
	case r.GetCpuid1EaxFms() != 0:
		product = abi.SevProductFromCpuid1Eax(r.GetCpuid1EaxFms())
	case d.ek != nil:
		if exts, err := kds.CertificateExtensions(d.ek, d.signer); err == nil {
			product, _ = kds.ParseProductName(exts.ProductName, d.signer)
		}
	}
	if product == nil && att.GetProduct() != nil {
		product = att.GetProduct()
	}
	if product != nil && product.Name != spb.SevProduct_SEV_PRODUCT_UNKNOWN {
		d.line = kds.ProductLine(product)
		d.product = d.line
		if product.MachineStepping != nil {
			d.product = kds.ProductName(product)
		}
	}

	fs := []Field{
		{"Product", orUnknown(d.product)},
		{"Report version", fmt.Sprint(r.GetVersion())},
		{"Measurement", hex.EncodeToString(r.GetMeasurement())},
		{"Policy hash (HOST_DATA)", hex.EncodeToString(r.GetHostData())},
		{"Report data", hex.EncodeToString(r.GetReportData())},
		{"Guest policy", snpPolicyString(r.GetPolicy())},
		{"VMPL", fmt.Sprint(r.GetVmpl())},
		{"Platform info", platformInfoString(r.GetPlatformInfo())},
		{"Reported TCB", tcbString(r.GetReportedTcb())},
		{"Current TCB", tcbString(r.GetCurrentTcb())},
		{"Committed TCB", tcbString(r.GetCommittedTcb())},
		{"Launch TCB", tcbString(r.GetLaunchTcb())},
		{"Firmware", fmt.Sprintf("%d.%d build %d", r.GetCurrentMajor(), r.GetCurrentMinor(), r.GetCurrentBuild())},
		{"Chip ID", hex.EncodeToString(r.GetChipId())},
		{"ID key digest", hex.EncodeToString(r.GetIdKeyDigest())},
		{"Signed by", ekName},
	}
	if d.ek != nil {
		fs = append(fs, Field{ekName + " certificate", certSummary(d.ek)})
	} else if d.ekErr != nil {
		fs = append(fs, Field{ekName + " certificate", "in the evidence, but does not parse: " + d.ekErr.Error()})
	} else {
		fs = append(fs, Field{ekName + " certificate", "not in the evidence"})
	}
	if d.ask != nil {
		fs = append(fs, Field{"ASK certificate", certSummary(d.ask)})
	}
	if len(chain.GetArkCert()) > 0 {
		if ark, err := x509.ParseCertificate(chain.GetArkCert()); err == nil {
			fs = append(fs, Field{"ARK certificate (evidence copy, not trusted)", certSummary(ark)})
		}
	}
	if d.crl != nil {
		fs = append(fs, Field{"CRL", fmt.Sprintf("attached, issued by %s, next update %s, %d revoked", d.crl.Issuer, d.crl.NextUpdate.UTC().Format("2006-01-02"), len(d.crl.RevokedCertificateEntries))})
	}
	return d, fs
}

func certSummary(c *x509.Certificate) string {
	return fmt.Sprintf("%s (serial %x, valid %s to %s)", c.Subject, c.SerialNumber, c.NotBefore.UTC().Format("2006-01-02"), c.NotAfter.UTC().Format("2006-01-02"))
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

// checkSNP verifies the attestation and validates it against every SNP
// reference-value entry; the first passing entry wins, as in Contrast.
func checkSNP(ctx context.Context, att *spb.Attestation, d snpDecoded, x *expect) outcome {
	if d.ekErr != nil {
		// A certificate that is there but broken is a fault of the
		// evidence, not something fetching could make up for.
		return fail(stageVerify, failure.EvidenceInvalid, "the report's %s certificate does not parse: %v", d.signerName(), d.ekErr)
	}
	if x.opts.Offline && d.ek == nil {
		o := fail(stageVerify, failure.EvidenceInvalid,
			"the report carries no %s certificate and offline mode forbids fetching it from AMD KDS, so its signature cannot be verified", d.signerName())
		o.unverifiable = true
		return o
	}
	var refs []SNPReference
	if x.opts.Reference != nil {
		refs = x.opts.Reference.snpRefs()
	}
	if len(refs) == 0 {
		return evaluateSNP(ctx, att, d, nil, x)
	}
	outs := make([]outcome, len(refs))
	for i := range refs {
		outs[i] = evaluateSNP(ctx, att, d, &refs[i], x)
		if outs[i].mode == failure.OK {
			return outs[i]
		}
	}
	return best(outs)
}

func (d snpDecoded) signerName() string {
	if d.signer == abi.VlekReportSigner {
		return "VLEK"
	}
	return "VCEK"
}

// permissivePolicy allows every guest policy, so a validation run checks
// only what its options set.
var permissivePolicy = abi.SnpPolicy{SMT: true, MigrateMA: true, Debug: true, CXLAllowed: true}

func evaluateSNP(ctx context.Context, att *spb.Attestation, d snpDecoded, ref *SNPReference, x *expect) outcome {
	src, name := "no reference values", "none"
	if ref != nil {
		src = fmt.Sprintf("manifest snp[%d]", ref.Index)
		name = src
		if ref.ProductName != "" {
			name += " (" + ref.ProductName + ")"
		}
	}
	o := evaluateSNPEntry(ctx, att, d, ref, x, src)
	o.fields = append([]Field{{"Reference values", name}}, o.fields...)
	return o
}

func evaluateSNPEntry(ctx context.Context, att *spb.Attestation, d snpDecoded, ref *SNPReference, x *expect, src string) outcome {
	line := d.line
	if ref != nil && ref.ProductName != "" {
		if line != "" && line != ref.ProductName {
			return fail(stageVerify, failure.EvidenceInvalid,
				"the evidence comes from an AMD %s CPU, but %s is for %s, whose AMD roots cannot have signed it", line, src, ref.ProductName)
		}
		line = ref.ProductName
	}
	if line == "" {
		line = kds.DefaultProductLine()
	}
	roots, err := snpTrustedRoots(x.opts.SNPRoots, line, d.ask)
	if err != nil {
		return fail(stageVerify, failure.EvidenceInvalid, "cannot verify: %v", err)
	}
	vo := &verify.Options{
		DisableCertFetching: x.opts.Offline,
		Now:                 x.now,
		TrustedRoots:        roots,
		Getter:              sevGetter{x.fetch},
	}
	if ref != nil && ref.ProductName != "" {
		vo.Product, _ = kds.ParseProductLine(ref.ProductName)
	} else if att.GetProduct() == nil && d.line != "" {
		// Without it, go-sev-guest guesses (and says so on stdout) when it
		// has to fetch the VCEK of a version 2 report.
		vo.Product, _ = kds.ParseProductLine(d.line)
	}
	// A CRL in the evidence (Contrast's issuer attaches one) is checked
	// against the trusted ARK; offline only while it is fresh, because a
	// stale one would be fetched anew.
	if d.crl != nil {
		for _, r := range roots[line] {
			r.CRL = d.crl
		}
	}
	vo.CheckRevocations = !x.opts.Offline || (d.crl != nil && x.now.Before(d.crl.NextUpdate))

	a := proto.Clone(att).(*spb.Attestation)
	if err := verify.SnpAttestationContext(ctx, a, vo); err != nil {
		return fail(stageVerify, failure.EvidenceInvalid, "%s", describeSNPVerifyError(err, d.signerName(), line, x.opts.SNPRoots != nil))
	}
	verified := []Field{{"Trusted roots", snpRootsName(roots[line], x.opts.SNPRoots != nil, line)}}
	if vo.CheckRevocations {
		verified = append(verified, Field{"Revocation", "checked against the ARK-signed CRL"})
	} else {
		verified = append(verified, Field{"Revocation", "not checked (offline, no fresh CRL in the evidence)"})
	}
	withFields := func(o outcome) outcome {
		o.verified = true
		o.fields = append(verified, o.fields...)
		return o
	}

	if err := validate.SnpAttestation(a, &validate.Options{GuestPolicy: permissivePolicy, PermitProvisionalFirmware: true}); err != nil {
		return withFields(fail(stageConsistency, failure.EvidenceInvalid, "the report is inconsistent with its %s certificate: %v", d.signerName(), err))
	}
	r := a.GetReport()
	if ref == nil {
		if ok, detail := x.checkReportData(r.GetReportData()); !ok {
			return withFields(fail(stageReportData, failure.ReportDataMismatch, "%s", detail))
		}
		if ok, detail := x.checkPolicy("HOST_DATA", r.GetHostData()); !ok {
			return withFields(fail(stagePolicy, failure.PolicyHashMismatch, "%s", detail))
		}
		o := withFields(outcome{mode: failure.OK, stage: stagePassed})
		o.gaps = append(o.gaps, "the launch measurement and the other reference values (no manifest given)")
		return o
	}
	var gaps []string
	if !vo.CheckRevocations {
		gaps = append(gaps, "revocation (offline, and the evidence carries no fresh ARK-signed CRL)")
	}

	// The CLI's order (internal/attestation/snp/validator.go): with APEIP
	// the IterativeValidator matches the measurement first and stops there;
	// then one validate.SnpAttestation call, whose combined error lists
	// guest policy, REPORT_DATA, HOST_DATA (older CLIs pass the policy hash
	// as HostData), MEASUREMENT, then TCB, platform info, ID key and
	// mitigation vector (go-sev-guest validate.SnpAttestation); then VMPL
	// and the allowed chip IDs; the newest CLI checks the policy hash last,
	// after the validator passed. The first failure in that order is the
	// first the CLI prints, and the one `ccproxy explain` names.
	q := newSequence()
	expected, notes := [48]byte(ref.TrustedMeasurement), []Field(nil)
	if ref.APEIP != nil {
		var o outcome
		expected, notes, o = matchSNPMeasurement(r, ref, src, q.step())
		if o.mode != failure.OK {
			return withFields(o)
		}
	}
	st := q.step()
	if err := validate.SnpAttestation(a, &validate.Options{GuestPolicy: ref.GuestPolicy, PermitProvisionalFirmware: true}); err != nil {
		return withFields(fail(st, failure.ReferenceValueMismatch,
			"guest POLICY %s is not allowed by the GuestPolicy of %s (%s): %v", snpPolicyString(r.GetPolicy()), src, policyFlags(ref.GuestPolicy), err))
	}
	if ok, detail := x.checkReportData(r.GetReportData()); !ok {
		return withFields(fail(q.step(), failure.ReportDataMismatch, "%s", detail))
	}
	if !x.policyAfter {
		if ok, detail := x.checkPolicy("HOST_DATA", r.GetHostData()); !ok {
			return withFields(fail(q.step(), failure.PolicyHashMismatch, "%s", detail))
		}
	}
	if ref.APEIP == nil {
		var o outcome
		expected, notes, o = matchSNPMeasurement(r, ref, src, q.step())
		if o.mode != failure.OK {
			return withFields(o)
		}
	}

	// The platform's firmware: minimum TCB (current and launch).
	minimum := kds.TCBParts{BlSpl: ref.MinimumTCB.Bootloader, TeeSpl: ref.MinimumTCB.TEE, SnpSpl: ref.MinimumTCB.SNP, UcodeSpl: ref.MinimumTCB.Microcode}
	st = q.step()
	if err := validate.SnpAttestation(a, &validate.Options{GuestPolicy: permissivePolicy, MinimumTCB: minimum, MinimumLaunchTCB: minimum, PermitProvisionalFirmware: true}); err != nil {
		return withFields(fail(st, failure.TCBMismatch, "%s", snpTCBDetail(r, minimum, src, err)))
	}
	st = q.step()
	if ref.PlatformInfo != nil {
		if err := validate.SnpAttestation(a, &validate.Options{GuestPolicy: permissivePolicy, PermitProvisionalFirmware: true, PlatformInfo: ref.PlatformInfo}); err != nil {
			return withFields(fail(st, failure.ReferenceValueMismatch, "PLATFORM_INFO %s is not allowed by the PlatformInfo of %s (%s): %v",
				platformInfoString(r.GetPlatformInfo()), src, platformInfoFlags(*ref.PlatformInfo), err))
		}
	}
	// What was launched: the ID key the CLI trusts, derived from the
	// measurement that matched and the guest policy.
	var trustedIDKey []byte
	st = q.step()
	if ref.RequireIDBlock {
		digest, err := idblock.IDKeyDigest(expected, ref.GuestPolicy)
		if err != nil {
			return withFields(fail(st, failure.ReferenceValueMismatch, "cannot derive the trusted ID key for %s: %v", src, err))
		}
		trustedIDKey = digest[:]
		if !bytes.Equal(r.GetIdKeyDigest(), trustedIDKey) {
			return withFields(fail(st, failure.ReferenceValueMismatch, "%s", idKeyDetail(r.GetIdKeyDigest(), trustedIDKey, expected, ref, src)))
		}
		notes = append(notes, Field{"ID key", fmt.Sprintf("trusted: the ID key derived from the measurement and guest policy of %s", src)})
	}
	st = q.step()
	if v := ref.MinimumMitigationVector; v != 0 {
		if err := validate.SnpAttestation(a, &validate.Options{GuestPolicy: permissivePolicy, PermitProvisionalFirmware: true,
			MinimumLaunchMitigationVector: v, MinimumCurrentMitigationVector: v}); err != nil {
			return withFields(fail(st, failure.TCBMismatch, "%v (MinimumMitigationVector 0x%x from %s)", err, v, src))
		}
	}
	if r.GetVmpl() != 0 {
		return withFields(fail(q.step(), failure.ReferenceValueMismatch, "VMPL is %d; expected 0 (Contrast requires VMPL0)", r.GetVmpl()))
	}
	if len(ref.AllowedChipIDs) > 0 && !containsBytes(ref.AllowedChipIDs, r.GetChipId()) {
		return withFields(fail(q.step(), failure.ReferenceValueMismatch, "CHIP_ID %x is not in the AllowedChipIDs of %s (%s) (CLI: \"chip ID %x not in allowed chip IDs\")",
			r.GetChipId(), src, hexList(ref.AllowedChipIDs), r.GetChipId()))
	}

	// Every field above passed; the CLI's own call, with all its options
	// at once, must pass too. A failure here is a check ccproxy does not
	// model field by field: never let it pass as ok.
	if err := validate.SnpAttestation(a, cliSNPOptions(ref, expected, trustedIDKey)); err != nil {
		return withFields(fail(stageCLI, failure.ReferenceValueMismatch,
			"the report passes each field check but fails the validation the Contrast CLI runs with the reference values of %s: %v", src, err))
	}
	if x.policyAfter {
		// The newest CLI: after the validator passed
		// (wrong policy hash for Coordinator: got <hex>, want <hexes>).
		if ok, detail := x.checkPolicy("HOST_DATA", r.GetHostData()); !ok {
			return withFields(fail(stageCLI+1, failure.PolicyHashMismatch, "%s", detail))
		}
	}
	gaps = append(gaps, x.bindingGaps()...)
	return withFields(outcome{mode: failure.OK, stage: stagePassed, gaps: gaps, fields: notes})
}

// cliSNPOptions are the go-sev-guest validation options the Contrast CLI
// builds from one reference-value entry (internal/manifest SNPValidateOpts),
// for the measurement it matched, less report data and HOST_DATA (checked
// before, with their own modes).
func cliSNPOptions(ref *SNPReference, measurement [48]byte, trustedIDKey []byte) *validate.Options {
	minimum := kds.TCBParts{BlSpl: ref.MinimumTCB.Bootloader, TeeSpl: ref.MinimumTCB.TEE, SnpSpl: ref.MinimumTCB.SNP, UcodeSpl: ref.MinimumTCB.Microcode}
	o := &validate.Options{
		Measurement:                    measurement[:],
		GuestPolicy:                    ref.GuestPolicy,
		PlatformInfo:                   ref.PlatformInfo,
		VMPL:                           new(int),
		MinimumTCB:                     minimum,
		MinimumLaunchTCB:               minimum,
		PermitProvisionalFirmware:      true,
		MinimumLaunchMitigationVector:  ref.MinimumMitigationVector,
		MinimumCurrentMitigationVector: ref.MinimumMitigationVector,
	}
	if ref.RequireIDBlock {
		o.RequireIDBlock = true
		o.TrustedIDKeyHashes = [][]byte{trustedIDKey}
	}
	return o
}

// matchSNPMeasurement compares MEASUREMENT with the entry: exactly, or, when
// the entry gives a 1-vCPU seed and APEIP, against the seed extended to each
// vCPU count from 1 to snpmeasure.MaxVCPUs. It returns the measurement that
// matched (the one the ID key is derived from).
func matchSNPMeasurement(r *spb.Report, ref *SNPReference, src string, st stage) ([48]byte, []Field, outcome) {
	observed := r.GetMeasurement()
	seed := [48]byte(ref.TrustedMeasurement)
	if ref.APEIP == nil {
		if !bytes.Equal(observed, seed[:]) {
			return seed, nil, fail(st, failure.MeasurementMismatch,
				"MEASUREMENT is %x; expected %x (from %s)", observed, seed, src)
		}
		return seed, nil, outcome{mode: failure.OK}
	}
	eip := binary.BigEndian.Uint32(ref.APEIP)
	for n, d := range snpmeasure.Digests(seed, eip, ref.CPUSignature, snpmeasure.MaxVCPUs) {
		if bytes.Equal(observed, d[:]) {
			return d, []Field{{"Measurement match", fmt.Sprintf("the 1-vCPU seed of %s extended to %d vCPUs (APEIP %x, CPU signature %#x)",
				src, n, ref.APEIP, ref.CPUSignature)}}, outcome{mode: failure.OK}
		}
	}
	return seed, nil, fail(st, failure.MeasurementMismatch,
		"MEASUREMENT is %x; expected the 1-vCPU seed %x of %s extended by AP VMSA pages (APEIP %x, CPU signature %#x) for 1 to %d vCPUs, and none matches (CLI: \"measurement does not match any vCPU count from 1 to %d\")",
		observed, seed, src, ref.APEIP, ref.CPUSignature, snpmeasure.MaxVCPUs, snpmeasure.MaxVCPUs)
}

// idKeyDetail names the ID-key failure the way the CLI's text does, with
// what was observed and what Contrast derives.
func idKeyDetail(observed, trusted []byte, measurement [48]byte, ref *SNPReference, src string) string {
	what := fmt.Sprintf("ID_KEY_DIGEST is %x", observed)
	if allZero(observed) {
		what += " (the report has no ID block: the VM was not launched with Contrast's ID block)"
	}
	return fmt.Sprintf("%s; expected %x, the SHA-384 of the ID key Contrast derives from measurement %x and guest policy %s (%s) (CLI: \"report ID key not trusted: %x\")",
		what, trusted, measurement, policyFlags(ref.GuestPolicy), src, observed)
}

func allZero(b []byte) bool {
	for _, v := range b {
		if v != 0 {
			return false
		}
	}
	return true
}

func snpTCBDetail(r *spb.Report, minimum kds.TCBParts, src string, err error) string {
	reported := kds.DecomposeTCBVersion(kds.TCBVersion(r.GetReportedTcb()))
	launch := kds.DecomposeTCBVersion(kds.TCBVersion(r.GetLaunchTcb()))
	switch {
	case !kds.TCBPartsLE(minimum, reported):
		return fmt.Sprintf("REPORTED_TCB %s is below the minimum %s in at least one component (MinimumTCB from %s)",
			tcbString(r.GetReportedTcb()), tcbPartsString(minimum), src)
	case !kds.TCBPartsLE(minimum, launch):
		return fmt.Sprintf("LAUNCH_TCB %s is below the minimum %s in at least one component (MinimumTCB from %s)",
			tcbString(r.GetLaunchTcb()), tcbPartsString(minimum), src)
	}
	return fmt.Sprintf("%v (MinimumTCB %s from %s)", err, tcbPartsString(minimum), src)
}

func snpRootsName(roots []*trust.AMDRootCerts, custom bool, line string) string {
	src := "built-in AMD roots"
	if custom {
		src = "configured SNP roots"
	}
	var arks []string
	for _, r := range roots {
		if r.ProductCerts != nil && r.ProductCerts.Ark != nil {
			arks = append(arks, r.ProductCerts.Ark.Subject.String())
		}
	}
	if len(arks) == 0 {
		return src + " for " + line
	}
	return fmt.Sprintf("%s for %s (ARK %s)", src, line, strings.Join(arks, "; "))
}

func describeSNPVerifyError(err error, signer, line string, custom bool) string {
	which := "built-in AMD " + line + " roots"
	if custom {
		which = "configured SNP roots"
	}
	msg := err.Error()
	switch {
	case strings.Contains(msg, "report signature verification error"):
		return fmt.Sprintf("the report signature does not verify with its %s certificate: %v", signer, err)
	case strings.Contains(msg, "could not be verified by any trusted roots"), strings.Contains(msg, "error verifying"):
		return fmt.Sprintf("the %s certificate does not chain to the %s: %v", signer, which, err)
	case strings.Contains(msg, "CRL"), strings.Contains(msg, "revoked"):
		return fmt.Sprintf("revocation check failed: %v", err)
	}
	return fmt.Sprintf("verifying the report: %v", err)
}

func containsBytes(list [][]byte, b []byte) bool {
	for _, v := range list {
		if bytes.Equal(v, b) {
			return true
		}
	}
	return false
}
