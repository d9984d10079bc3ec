package attest

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/ccproxy-dev/ccproxy/internal/failure"
	tpb "github.com/google/go-tdx-guest/proto/tdx"
	"github.com/google/go-tdx-guest/validate"
	"github.com/google/go-tdx-guest/verify"
)

// intelQEVendorID is the QE_VENDOR_ID of Intel's quoting enclave, which
// Contrast requires.
var intelQEVendorID = []byte{0x93, 0x9a, 0x72, 0x33, 0xf7, 0x9c, 0x4c, 0xa9, 0x94, 0x0a, 0x0d, 0xb3, 0x95, 0x7f, 0x06, 0x07}

// contrastTdAttributes is what Contrast's newest reference values require:
// only SEPT_VE_DISABLE (bit 28), as Kata/QEMU configure it.
var contrastTdAttributes = binary.LittleEndian.AppendUint64(nil, 1<<28)

type tdxDecoded struct {
	product string
	pck     *x509.Certificate
	pckInfo *pckInfo
	pckErr  error
}

func policyHashOfTDX(q *tpb.QuoteV4) []byte {
	id := q.GetTdQuoteBody().GetMrConfigId()
	if len(id) < 32 {
		return id
	}
	return id[:32]
}

func decodeTDXFields(q *tpb.QuoteV4, collateral int) (tdxDecoded, []Field) {
	h, b := q.GetHeader(), q.GetTdQuoteBody()
	var d tdxDecoded
	chainPEM := q.GetSignedData().GetCertificationData().GetQeReportCertificationData().GetPckCertificateChainData().GetPckCertChain()
	pck, chain := pckCertificates(chainPEM)
	d.pck = pck
	if pck == nil {
		d.pckErr = fmt.Errorf("the quote's certificate chain has no PCK certificate")
	} else {
		d.pckInfo, d.pckErr = parsePCKInfo(pck)
	}
	d.product = "Intel TDX"
	if d.pckInfo != nil && d.pckInfo.fmspc != nil {
		d.product = fmt.Sprintf("Intel TDX (FMSPC %x)", d.pckInfo.fmspc)
	}

	vendor := hex.EncodeToString(h.GetQeVendorId())
	if bytes.Equal(h.GetQeVendorId(), intelQEVendorID) {
		vendor += " (Intel)"
	}
	fs := []Field{
		{"Product", d.product},
		{"Quote version", fmt.Sprint(h.GetVersion())},
		{"MRTD", hex.EncodeToString(b.GetMrTd())},
	}
	for i, r := range b.GetRtmrs() {
		fs = append(fs, Field{fmt.Sprintf("RTMR%d", i), hex.EncodeToString(r)})
	}
	fs = append(fs,
		Field{"MRSEAM", hex.EncodeToString(b.GetMrSeam())},
		Field{"XFAM", le64String(b.GetXfam())},
		Field{"TD attributes", le64String(b.GetTdAttributes())},
		Field{"Policy hash (MR_CONFIG_ID[:32])", hex.EncodeToString(policyHashOfTDX(q))},
		Field{"Report data", hex.EncodeToString(b.GetReportData())},
		Field{"TEE_TCB_SVN", hex.EncodeToString(b.GetTeeTcbSvn())},
		Field{"QE SVN", fmt.Sprint(le16(h.GetQeSvn()))},
		Field{"PCE SVN", fmt.Sprint(le16(h.GetPceSvn()))},
		Field{"QE vendor ID", vendor},
	)
	for _, c := range chain {
		fs = append(fs, Field{"PCK chain certificate", certSummary(c)})
	}
	if d.pckInfo != nil {
		if d.pckInfo.piid != nil {
			fs = append(fs, Field{"PIID", hex.EncodeToString(d.pckInfo.piid)})
		}
		if d.pckInfo.sgxType != nil {
			fs = append(fs, Field{"SGX type", sgxTypeName(*d.pckInfo.sgxType)})
		}
		if d.pckInfo.dynamicPlatform != nil {
			fs = append(fs, Field{"Dynamic platform", fmt.Sprint(*d.pckInfo.dynamicPlatform)})
		}
		if d.pckInfo.smtEnabled != nil {
			fs = append(fs, Field{"SMT enabled", fmt.Sprint(*d.pckInfo.smtEnabled)})
		}
	} else if d.pckErr != nil {
		fs = append(fs, Field{"PCK certificate", d.pckErr.Error()})
	}
	if collateral > 0 {
		fs = append(fs, Field{"Collateral", fmt.Sprintf("%d bytes attached (unsigned, not used)", collateral)})
	}
	return d, fs
}

func le16(b []byte) uint16 {
	if len(b) < 2 {
		return 0
	}
	return binary.LittleEndian.Uint16(b)
}

func le64String(b []byte) string {
	if len(b) != 8 {
		return hex.EncodeToString(b)
	}
	return fmt.Sprintf("%x (0x%x)", b, binary.LittleEndian.Uint64(b))
}

// checkTDX verifies the quote (once: TDX verification does not depend on
// the reference values) and validates it against every TDX entry.
func checkTDX(ctx context.Context, q *tpb.QuoteV4, d tdxDecoded, x *expect) outcome {
	pool, err := tdxRoots(x.opts.TDXRoots)
	if err != nil {
		return fail(stageVerify, failure.EvidenceInvalid, "cannot verify: trusted TDX roots: %v", err)
	}
	// A fresh Options for every call: go-tdx-guest stores the chain and
	// collateral of the quote it verifies in them.
	vo := &verify.Options{
		CheckRevocations: !x.opts.Offline,
		GetCollateral:    !x.opts.Offline,
		Getter:           tdxGetter{x.fetch},
		// One time for every certificate and collateral the check reads.
		Now: &verify.TimeSet{PckCertChain: x.now, TcbInfo: x.now, QeIdentity: x.now, PckCrl: x.now, RootCaCrl: x.now},
		// Always explicit: with nil, go-tdx-guest prints a warning to stdout.
		TrustedRoots: pool,
	}
	if err := verify.TdxQuote(q, vo); err != nil {
		return fail(stageVerify, failure.EvidenceInvalid, "%s", describeTDXVerifyError(err, x.opts.TDXRoots != nil))
	}
	roots := "built-in Intel SGX Root CA"
	if x.opts.TDXRoots != nil {
		roots = "configured TDX roots"
	}
	verified := []Field{{"Trusted roots", roots}}
	if x.opts.Offline {
		verified = append(verified, Field{"Collateral and revocation", "not checked (offline)"})
	} else {
		verified = append(verified, Field{"Collateral and revocation", "checked against Intel PCS"})
	}
	var refs []TDXReference
	if x.opts.Reference != nil {
		refs = x.opts.Reference.tdxRefs()
	}
	var o outcome
	if len(refs) == 0 {
		o = evaluateTDX(q, d, nil, x)
	} else {
		var outs []outcome
		for i := range refs {
			outs = append(outs, evaluateTDX(q, d, &refs[i], x))
			if outs[i].mode == failure.OK {
				break
			}
		}
		o = best(outs)
	}
	if o.mode == failure.OK && x.opts.Offline {
		o.gaps = append(o.gaps, "Intel's collateral (TCB info, QE identity) and revocation (offline)")
	}
	o.verified = true
	// After the "Reference values" line every entry's outcome starts with.
	o.fields = append(o.fields[:1:1], append(verified, o.fields[1:]...)...)
	return o
}

func evaluateTDX(q *tpb.QuoteV4, d tdxDecoded, ref *TDXReference, x *expect) outcome {
	src, name := "no reference values", "none"
	if ref != nil {
		src = fmt.Sprintf("manifest tdx[%d]", ref.Index)
		name = src
	}
	o := evaluateTDXEntry(q, d, ref, x, src)
	o.fields = append([]Field{{"Reference values", name}}, o.fields...)
	return o
}

func evaluateTDXEntry(q *tpb.QuoteV4, d tdxDecoded, ref *TDXReference, x *expect, src string) outcome {
	h, b := q.GetHeader(), q.GetTdQuoteBody()
	qeVendor := func(st stage) (outcome, bool) {
		if !bytes.Equal(h.GetQeVendorId(), intelQEVendorID) {
			return fail(st, failure.EvidenceInvalid, "QE_VENDOR_ID is %x; expected Intel's %x", h.GetQeVendorId(), intelQEVendorID), false
		}
		return outcome{}, true
	}
	if ref == nil {
		if ok, detail := x.checkReportData(b.GetReportData()); !ok {
			return fail(stageReportData, failure.ReportDataMismatch, "%s", detail)
		}
		if o, ok := x.checkTDXPolicy(q, stagePolicy); !ok {
			return o
		}
		if o, ok := qeVendor(stagePolicy + 1); !ok {
			return o
		}
		return outcome{mode: failure.OK, stage: stagePassed,
			gaps: []string{"MRTD, RTMRs and the other reference values (no manifest given)"}}
	}

	// The CLI's order (internal/attestation/tdx/validator.go): one
	// validate.TdxQuote call, whose combined error lists MR_SEAM,
	// TD_ATTRIBUTES, XFAM, MR_TD, MR_CONFIG_ID (older CLIs pass the policy
	// hash there), the RTMRs, REPORT_DATA, QE_VENDOR_ID, then the SVNs
	// (go-tdx-guest exactByteMatch, minVersionCheck); then the PIIDs; the
	// newest CLI checks the policy hash last, after the validator passed.
	// The first failure in that order is the first the CLI prints.
	seq := newSequence()
	// The newest CLI compares XFAM itself first, ignoring the CET bits
	// (11, 12), which QEMU sets on hosts whose CPU has CET, and leaves it
	// out of the library call; older CLIs compare all 8 bytes there.
	xfamInCall := ref.Xfam
	if x.policyAfter && ref.Xfam != nil {
		xfamInCall = nil
		st := seq.step()
		if !xfamEqualIgnoringCET(b.GetXfam(), ref.Xfam) {
			return fail(st, failure.ReferenceValueMismatch,
				"XFAM is %x; expected %x, ignoring the CET bits 11 and 12 as the newest CLI does (Xfam from %s) (CLI: \"validating xfam: XFAM mismatch: got %x, want %x (ignoring CET bits)\")",
				b.GetXfam(), ref.Xfam, src, b.GetXfam(), ref.Xfam)
		}
	}
	for _, f := range []struct {
		name, option       string
		observed, expected []byte
	}{
		{"MR_SEAM", "MrSeam", b.GetMrSeam(), ref.MrSeam},
		{"TD_ATTRIBUTES", "TdAttributes", b.GetTdAttributes(), tdAttributes(ref)},
		{"XFAM", "Xfam", b.GetXfam(), xfamInCall},
	} {
		st := seq.step()
		if f.expected != nil && !bytes.Equal(f.observed, f.expected) {
			return fail(st, failure.ReferenceValueMismatch, "%s is %x; expected %x (%s from %s)", f.name, f.observed, f.expected, f.option, src)
		}
	}
	if st := seq.step(); !bytes.Equal(b.GetMrTd(), ref.MrTd) {
		return fail(st, failure.MeasurementMismatch, "MR_TD is %x; expected %x (from %s)", b.GetMrTd(), ref.MrTd, src)
	}
	if !x.policyAfter {
		if o, ok := x.checkTDXPolicy(q, seq.step()); !ok {
			return o
		}
	}
	for i := range 4 {
		if st := seq.step(); !bytes.Equal(nth(b.GetRtmrs(), i), ref.Rtmrs[i]) {
			return fail(st, failure.MeasurementMismatch, "RTMR[%d] is %x; expected %x (from %s)", i, nth(b.GetRtmrs(), i), ref.Rtmrs[i], src)
		}
	}
	if ok, detail := x.checkReportData(b.GetReportData()); !ok {
		return fail(seq.step(), failure.ReportDataMismatch, "%s", detail)
	}
	if o, ok := qeVendor(seq.step()); !ok {
		return o
	}

	// The platform's firmware: SVNs.
	if min := ref.MinimumTeeTcbSvn; min != nil {
		st := seq.step()
		for i, v := range b.GetTeeTcbSvn() {
			if i < len(min) && v < min[i] {
				return fail(st, failure.TCBMismatch, "TEE_TCB_SVN is %x; expected at least %x in every component (byte %d is %d < %d; MinimumTeeTcbSvn from %s)",
					b.GetTeeTcbSvn(), min, i, v, min[i], src)
			}
		}
	}
	if ref.MinimumQeSvn != nil && le16(h.GetQeSvn()) < *ref.MinimumQeSvn {
		return fail(seq.step(), failure.TCBMismatch, "QE SVN is %d; expected at least %d (MinimumQeSvn from %s)", le16(h.GetQeSvn()), *ref.MinimumQeSvn, src)
	}
	if ref.MinimumPceSvn != nil && le16(h.GetPceSvn()) < *ref.MinimumPceSvn {
		return fail(seq.step(), failure.TCBMismatch, "PCE SVN is %d; expected at least %d (MinimumPceSvn from %s)", le16(h.GetPceSvn()), *ref.MinimumPceSvn, src)
	}

	// The machine, from the PCK certificate: platform options and PIID.
	st := seq.step()
	needPCK := len(ref.AllowedPIIDs) > 0 || ref.MemoryIntegrity || ref.SMTDisabled || ref.StaticPlatform
	if needPCK && d.pckInfo == nil {
		return fail(st, failure.ReferenceValueMismatch, "%s constrains the platform (PIID, SGX type or configuration), but the PCK certificate cannot be read: %v", src, d.pckErr)
	}
	if ref.MemoryIntegrity && (d.pckInfo.sgxType == nil || *d.pckInfo.sgxType != sgxTypeScalableWithIntegrity) {
		return fail(seq.step(), failure.ReferenceValueMismatch, "the PCK certificate's SGX type is %s; expected ScalableWithIntegrity (MemoryIntegrity from %s)", optSGXType(d.pckInfo.sgxType), src)
	}
	if ref.SMTDisabled && (d.pckInfo.smtEnabled == nil || *d.pckInfo.smtEnabled) {
		return fail(seq.step(), failure.ReferenceValueMismatch, "the PCK certificate says SMT enabled is %s; expected false (SMTDisabled from %s)", optBool(d.pckInfo.smtEnabled), src)
	}
	if ref.StaticPlatform && (d.pckInfo.dynamicPlatform == nil || *d.pckInfo.dynamicPlatform) {
		return fail(seq.step(), failure.ReferenceValueMismatch, "the PCK certificate says dynamic platform is %s; expected false (StaticPlatform from %s)", optBool(d.pckInfo.dynamicPlatform), src)
	}
	if len(ref.AllowedPIIDs) > 0 && !containsBytes(ref.AllowedPIIDs, d.pckInfo.piid) {
		piid := "absent"
		if d.pckInfo.piid != nil {
			piid = hex.EncodeToString(d.pckInfo.piid)
		}
		return fail(seq.step(), failure.ReferenceValueMismatch, "the PCK certificate's PIID %s is not in the AllowedPIIDs of %s (%s) (CLI: \"PIID %s not in allowed PIIDs\")", piid, src, hexList(ref.AllowedPIIDs), piid)
	}

	// Every field above passed; the CLI's own library call with the same
	// options must pass too. Its failure is named by the stage, never by
	// the library's wording.
	opts := contrastTDXOptions(ref)
	opts.TdQuoteBodyOptions.Xfam = xfamInCall
	if err := validate.TdxQuote(q, opts); err != nil {
		return fail(stageCLI, failure.ReferenceValueMismatch,
			"the quote passes each field check but fails the validation the Contrast CLI runs with the reference values of %s: %v", src, err)
	}
	if x.policyAfter {
		if o, ok := x.checkTDXPolicy(q, stageCLI+1); !ok {
			return o
		}
	}

	o := outcome{mode: failure.OK, stage: stagePassed}
	if ref.MinTCBEvaluationDataNumber > 0 {
		o.gaps = append(o.gaps, fmt.Sprintf(
			"MinTCBEvaluationDataNumber %d (from %s): newest CLIs require Intel's TCB collateral to be at least that fresh (a go-tdx-guest verify option only the edgelesssys fork Contrast links has); ccproxy cannot check it",
			ref.MinTCBEvaluationDataNumber, src))
	}
	o.gaps = append(o.gaps, x.bindingGaps()...)
	return o
}

// checkTDXPolicy compares the quote's policy hash the way the CLI of the
// manifest's era does: the newest takes MR_CONFIG_ID's first 32 bytes
// (internal/attestation/tdx Report.HostData); older ones compare all 48
// bytes with the hash followed by 16 zero bytes (go-tdx-guest MrConfigID).
func (x *expect) checkTDXPolicy(q *tpb.QuoteV4, st stage) (outcome, bool) {
	if ok, detail := x.checkPolicy("MR_CONFIG_ID", policyHashOfTDX(q)); !ok {
		return fail(st, failure.PolicyHashMismatch, "%s", detail), false
	}
	if id := q.GetTdQuoteBody().GetMrConfigId(); !x.policyAfter && x.policyHashes != nil && len(id) == 48 && !allZero(id[32:]) {
		return fail(st, failure.PolicyHashMismatch,
			"MR_CONFIG_ID is %x; expected the 32-byte Coordinator policy hash followed by 16 zero bytes, but its last 16 bytes are %x", id, id[32:]), false
	}
	return outcome{}, true
}

// xfamCETMask covers XFAM's CET bits, CET_U (11) and CET_S (12).
const xfamCETMask = uint64(1)<<11 | uint64(1)<<12

// xfamEqualIgnoringCET is the newest CLI's XFAM comparison
// (internal/attestation/tdx validateXfamIgnoringCET): both 8 bytes, equal
// but for the CET bits.
func xfamEqualIgnoringCET(quote, ref []byte) bool {
	if len(quote) != 8 || len(ref) != 8 {
		return false
	}
	return binary.LittleEndian.Uint64(quote)&^xfamCETMask == binary.LittleEndian.Uint64(ref)&^xfamCETMask
}

func nth(list [][]byte, i int) []byte {
	if i < len(list) {
		return list[i]
	}
	return nil
}

func tdAttributes(ref *TDXReference) []byte {
	if ref.TdAttributes != nil {
		return ref.TdAttributes
	}
	return contrastTdAttributes
}

// contrastTDXOptions are the validation options Contrast builds from a
// reference-value entry, minus the report data and policy hash (checked
// separately, before).
func contrastTDXOptions(ref *TDXReference) *validate.Options {
	opts := &validate.Options{
		HeaderOptions: validate.HeaderOptions{QeVendorID: intelQEVendorID},
		TdQuoteBodyOptions: validate.TdQuoteBodyOptions{
			MinimumTeeTcbSvn: ref.MinimumTeeTcbSvn,
			MrSeam:           ref.MrSeam,
			TdAttributes:     tdAttributes(ref),
			Xfam:             ref.Xfam,
			MrTd:             ref.MrTd,
			Rtmrs:            ref.Rtmrs[:],
		},
	}
	if ref.MinimumQeSvn != nil {
		opts.HeaderOptions.MinimumQeSvn = *ref.MinimumQeSvn
	}
	if ref.MinimumPceSvn != nil {
		opts.HeaderOptions.MinimumPceSvn = *ref.MinimumPceSvn
	}
	return opts
}

func describeTDXVerifyError(err error, custom bool) string {
	which := "the built-in Intel SGX Root CA"
	if custom {
		which = "the configured TDX roots"
	}
	msg := err.Error()
	switch {
	case strings.Contains(msg, "unable to verify message digest"):
		return fmt.Sprintf("the quote signature does not verify with its attestation key: %v", err)
	case strings.Contains(msg, "QE report"), strings.Contains(msg, "QE Report"):
		return fmt.Sprintf("the quoting enclave's report does not verify with the PCK certificate: %v", err)
	case strings.Contains(msg, "PCK"), strings.Contains(msg, "root cert"), strings.Contains(msg, "Intermediate CA"):
		return fmt.Sprintf("the PCK certificate chain does not verify against %s: %v", which, err)
	}
	return fmt.Sprintf("verifying the quote: %v", err)
}

func optBool(b *bool) string {
	if b == nil {
		return "absent"
	}
	return fmt.Sprint(*b)
}

func optSGXType(t *int) string {
	if t == nil {
		return "absent"
	}
	return sgxTypeName(*t)
}
