package attest

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/ccproxy-dev/ccproxy/internal/failure"
)

// stage orders the checks. When every reference-value entry fails, the one
// whose failure came latest names the mode: it is the closest match.
type stage int

// The checks against one reference-value entry run in the order the CLI of
// the manifest's era makes them (evaluateSNPEntry, evaluateTDXEntry); each
// takes the next stage from stageFields on, so "furthest" is that order.
const (
	stageVerify      stage = iota // signature and chain
	stageConsistency              // the evidence agrees with its own certificates
	stageReportData               // without a manifest: report data, then policy hash
	stagePolicy
	stageFields stage = 10  // first of the per-entry field checks, in the CLI's order
	stageCLI    stage = 100 // the CLI's own library validation with all its options at once
	stagePassed stage = 101
)

// sequence hands out the stages of one entry's checks in the order they run.
type sequence struct{ next stage }

func newSequence() *sequence { return &sequence{next: stageFields} }

// step returns the stage of the next check.
func (q *sequence) step() stage {
	st := q.next
	q.next++
	return st
}

// outcome is the result of checking evidence against one reference-value
// entry (or none).
type outcome struct {
	mode   failure.Mode
	detail string
	stage  stage
	// verified: signature and chain verified.
	verified bool
	// unverifiable: verification was impossible (offline, missing
	// certificates) rather than failed.
	unverifiable bool
	// gaps name what the CLI checks that this check could not (offline,
	// missing collateral, a library that lacks the check); a passing outcome
	// with gaps is unverified, never verified.
	gaps   []string
	fields []Field
}

func fail(st stage, mode failure.Mode, format string, a ...any) outcome {
	return outcome{mode: mode, stage: st, detail: fmt.Sprintf(format, a...)}
}

// expect is what the evidence is checked against, shared by the platforms.
type expect struct {
	opts Options
	now  time.Time
	// reportData is the expected REPORT_DATA; nil when not checked.
	reportData []byte
	// policyHashes are the expected policy hashes; nil when not checked.
	policyHashes [][]byte
	policySource string
	// policyAfter: the CLI of the manifest's era checks the Coordinator
	// policy hash after a validator passed (newest: CoordinatorValidator),
	// so every other failure is printed first; TDX compares only
	// MR_CONFIG_ID's first 32 bytes then. Older CLIs pass the hash to the
	// library with the other fields (go-sev-guest HostData, go-tdx-guest
	// MrConfigID: the hash and 16 zero bytes).
	policyAfter bool
	fetch       *fetcher
}

func newExpect(ctx context.Context, opts Options) *expect {
	x := &expect{opts: opts, now: opts.now(), fetch: newFetcher(ctx, opts)}
	if opts.Nonce != nil && opts.SPKI != nil {
		rd := ReportData(opts.SPKI, opts.Nonce)
		x.reportData = rd[:]
	}
	switch {
	case len(opts.PolicyHashes) > 0:
		x.policyHashes, x.policySource = opts.PolicyHashes, "configured Coordinator policy hash"
	case opts.Reference != nil:
		if h := opts.Reference.CoordinatorPolicyHashes(); len(h) > 0 {
			x.policyHashes, x.policySource = h, "manifest coordinator policy"
		}
	}
	x.policyAfter = opts.Reference != nil && opts.Reference.PolicyAfterValidation
	return x
}

// checkReportData compares REPORT_DATA; ok when it matches or is not checked.
func (x *expect) checkReportData(observed []byte) (ok bool, detail string) {
	if x.reportData == nil || bytes.Equal(observed, x.reportData) {
		return true, ""
	}
	return false, fmt.Sprintf("REPORT_DATA is %x; expected %x = SHA-512(certificate public key || nonce %x)",
		observed, x.reportData, x.opts.Nonce)
}

// checkPolicy compares the policy hash (HOST_DATA or the first 32 bytes of
// MR_CONFIG_ID) against the expected Coordinator policy hashes.
func (x *expect) checkPolicy(field string, observed []byte) (ok bool, detail string) {
	if x.policyHashes == nil {
		return true, ""
	}
	for _, h := range x.policyHashes {
		if bytes.Equal(observed, h) {
			return true, ""
		}
	}
	return false, fmt.Sprintf("%s (policy hash) is %x; expected %s (from %s)", field, observed, hexList(x.policyHashes), x.policySource)
}

// reportDataNote says why report data was not checked, for printing.
func (x *expect) reportDataNote() string {
	switch {
	case x.reportData != nil:
		return ""
	case x.opts.Nonce == nil:
		return "not checked (no nonce)"
	default:
		return "not checked (no certificate key to bind)"
	}
}

func (x *expect) nonceGiven() bool { return x.opts.Nonce != nil }

// bindingGaps names what keeps a passing outcome from being complete on the
// Coordinator's side: no expected policy hash, or a nonce with no key to
// bind it to.
func (x *expect) bindingGaps() []string {
	var gaps []string
	if x.policyHashes == nil {
		gaps = append(gaps, "the Coordinator policy hash (none expected: give --manifest or --coordinator-policy-hash)")
	}
	if x.nonceGiven() && x.reportData == nil {
		gaps = append(gaps, "the report data (no certificate key to bind the nonce to)")
	}
	return gaps
}

// checkEvidence runs the platform checker and assembles the Result.
func checkEvidence(ctx context.Context, ev *evidence, opts Options) (res Result) {
	// The libraries are trusted to reject malformed input with errors, but
	// the bytes come from the network: a panic must not take the relay down.
	// (The fuzz targets call evaluateEvidence directly, so panics surface.)
	defer func() {
		if r := recover(); r != nil {
			res = Result{Platform: ev.platform, Verdict: Rejected, Mode: failure.EvidenceInvalid,
				Detail: fmt.Sprintf("the %s evidence could not be processed: %v", ev.platform, r)}
		}
	}()
	return evaluateEvidence(ctx, ev, opts)
}

func evaluateEvidence(ctx context.Context, ev *evidence, opts Options) (res Result) {
	res.Platform = ev.platform
	x := newExpect(ctx, opts)
	res.Fields = append(res.Fields, Field{"Platform", ev.platform}, Field{"Evidence format", ev.format})

	var (
		out       outcome
		fields    []Field
		refsThere = opts.Reference != nil && len(opts.Reference.platforms()) > 0
	)
	switch ev.platform {
	case PlatformSNP:
		var d snpDecoded
		d, fields = decodeSNPFields(ev.snp)
		res.Product, res.PolicyHash = d.product, hex.EncodeToString(ev.snp.GetReport().GetHostData())
		if refsThere && len(opts.Reference.snpRefs()) == 0 {
			out = noMatchingValidator(ev.platform, opts.Reference)
		} else {
			out = checkSNP(ctx, ev.snp, d, x)
		}
	case PlatformTDX:
		var d tdxDecoded
		d, fields = decodeTDXFields(ev.tdx, ev.tdxCollateral)
		res.Product, res.PolicyHash = d.product, hex.EncodeToString(policyHashOfTDX(ev.tdx))
		if refsThere && len(opts.Reference.tdxRefs()) == 0 {
			out = noMatchingValidator(ev.platform, opts.Reference)
		} else {
			out = checkTDX(ctx, ev.tdx, d, x)
		}
	case PlatformInsecure:
		fields = insecureFields(ev.insecure, x)
		res.PolicyHash = hex.EncodeToString(ev.insecure.HostData)
		if refsThere && !opts.Reference.allowsInsecure() {
			out = noMatchingValidator(ev.platform, opts.Reference)
		} else {
			out = checkInsecure(ev.insecure, x)
		}
	default:
		out = fail(stageVerify, failure.EvidenceInvalid, "unknown platform %q", ev.platform)
	}
	res.Fields = append(res.Fields, fields...)
	res.Fields = append(res.Fields, out.fields...)
	if m := opts.Reference; m != nil && m.Era != "" {
		order := "the Coordinator policy hash among the evidence fields"
		if m.PolicyAfterValidation {
			order = "the Coordinator policy hash after validation"
		}
		res.Fields = append(res.Fields, Field{"Manifest era", fmt.Sprintf("%s: the CLI that wrote it checks %s", m.Era, order)})
	}
	if x.policyHashes != nil {
		res.ExpectedPolicyHash = expectedPolicyHash(x.policyHashes, res.PolicyHash)
	} else {
		res.Fields = append(res.Fields, Field{"Policy hash check", "not checked (no expected Coordinator policy hash)"})
	}
	if note := x.reportDataNote(); note != "" {
		res.Fields = append(res.Fields, Field{"Report data check", note})
	}

	res.Mode, res.Detail = out.mode, out.detail
	switch {
	case out.mode != failure.OK && out.unverifiable:
		res.Verdict = Unverified
	case out.mode != failure.OK:
		res.Verdict = Rejected
	case out.verified && len(out.gaps) == 0:
		res.Verdict = Verified
	default:
		res.Verdict = Unverified
		if len(out.gaps) > 0 {
			res.Fields = append(res.Fields, Field{"Unverified: not checked", strings.Join(out.gaps, "; ")})
		}
	}
	return res
}

// expectedPolicyHash is the expected hash to report: the one that matched,
// else all of them.
func expectedPolicyHash(hashes [][]byte, observed string) string {
	for _, h := range hashes {
		if hex.EncodeToString(h) == observed {
			return observed
		}
	}
	s := make([]string, len(hashes))
	for i, h := range hashes {
		s[i] = hex.EncodeToString(h)
	}
	return strings.Join(s, ",")
}

func noMatchingValidator(platform string, m *Manifest) outcome {
	return fail(stageVerify, failure.NoMatchingValidator,
		"the evidence is for %s, but the manifest has reference values only for %s, so Contrast finds no matching validator",
		platformName(platform), strings.Join(namesOf(m.platforms()), " and "))
}

func platformName(p string) string {
	switch p {
	case PlatformSNP:
		return "SEV-SNP"
	case PlatformTDX:
		return "TDX"
	case PlatformInsecure:
		return "the insecure platform"
	}
	return p
}

func namesOf(ps []string) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = platformName(p)
	}
	return out
}

// best picks the outcome that names the result among those of several
// reference-value entries: a pass, else the failure that came latest (ties:
// the first entry).
func best(outs []outcome) outcome {
	b := outs[0]
	for _, o := range outs[1:] {
		if b.mode == failure.OK {
			break
		}
		if o.mode == failure.OK || o.stage > b.stage {
			b = o
		}
	}
	return b
}

func checkInsecure(doc *insecureDoc, x *expect) outcome {
	out := outcome{mode: failure.OK, stage: stagePassed}
	if ok, d := x.checkReportData(doc.ReportData); !ok {
		return fail(stageReportData, failure.ReportDataMismatch, "%s", d)
	}
	if ok, d := x.checkPolicy("HostData", doc.HostData); !ok {
		return fail(stagePolicy, failure.PolicyHashMismatch, "%s", d)
	}
	// Nothing is signed: the insecure platform is never verified.
	return out
}

func insecureFields(doc *insecureDoc, x *expect) []Field {
	fs := []Field{{"Report data", hex.EncodeToString(doc.ReportData)}}
	if doc.HostData != nil {
		fs = append(fs, Field{"Policy hash (HostData)", hex.EncodeToString(doc.HostData)})
	}
	return append(fs, Field{"Signature", "none: the insecure platform signs nothing"})
}
