package explain

import (
	"encoding/hex"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/ccproxy-dev/ccproxy/internal/failure"
)

// The CLI's validator errors (internal/atls in Contrast):
//
//	with AtlsConnectionNonce <hex>:  validator snp-0-GENOA failed: <cause>
//	 validator tdx-0 failed: <cause>
//
// Each validator that ran contributes one " validator <name> failed:" part
// (errors.Join, so they may also sit on separate lines). A cause may combine
// several mismatches, separated by "; " (go-sev-guest and go-tdx-guest use
// multierr). The newest CLIs combine the reference values' validators into
// one (internal/atls/validators.Any), which prefixes each one's error with
// "sub-validator <index>:" and joins them, inside or instead of the
// "validator <name> failed:" part:
//
//	validator snp-0-GENOA failed: sub-validator 3: measurement does not match ...
//	with AtlsConnectionNonce <hex>: sub-validator 0: chip ID <hex> not in allowed chip IDs
//	sub-validator 1: validating report claims: ...
var (
	validatorRe    = pattern(`validator ([A-Za-z0-9_.\-]+) failed:`)
	subValidatorRe = pattern(`sub-validator ([0-9]+):`)
	nonceRe        = pattern(`with AtlsConnectionNonce ([0-9a-fA-F]+):\s*$`)

	// go-sev-guest: report field HOST_DATA is <hex>. Expect <hex>
	snpFieldRe = pattern(`report field ([A-Z_]+) is ([0-9a-fA-F]*)\. Expect ([0-9a-fA-F]+)`)
	// go-tdx-guest: quote field MR_CONFIG_ID is <hex>. Expect <hex>; older
	// releases printed the bytes as a decimal list: [12 0 255 ...].
	tdxFieldRe = pattern(`quote field ([A-Z_]+(?:\[[0-9]\])?) is (\[[0-9 ]*\]|[0-9a-fA-F]*)\. Expect (\[[0-9 ]*\]|[0-9a-fA-F]+)`)
	// Contrast, newest: the policy hash is checked after validation, against
	// one hash (`want <hex>`) or, newer still, every Coordinator policy hash
	// of the manifest (`want [<hex> <hex>]`, Go's %v of a slice).
	gotWantRe = pattern(`wrong policy hash for Coordinator: got ([0-9a-fA-F]*), want (\[[0-9a-fA-F ,]*\]|[0-9a-fA-F]+)`)
	// go-sev-guest, when the reference values require an ID block
	// (RequireIDBlock, TrustedIDKeyHashes / RequireAuthorKey).
	keyNotTrustedRe = pattern(`report (ID|author) key not trusted: ([0-9a-fA-F]*)`)
	vcpuRe          = pattern(`measurement does not match any vCPU count(?: from ([0-9]+) to ([0-9]+))?`)
	chipIDRe        = pattern(`chip ID ([0-9a-fA-F]*) not in allowed chip IDs`)
	piidRe          = pattern(`PIID ([0-9a-fA-F]*) not in allowed PIIDs`)
	// go-sev-guest: the report's REPORTED_TCB {...} is lower than the policy minimum TCB {...} in at least one component
	tcbLowerRe = near(pattern(`the ((?:report's [A-Z_]+)|(?:TCB of the V\[CL\]EK certificate)) (\{[^{}]*\}) is lower than the (policy minimum (?:launch )?TCB) (\{[^{}]*\})`), "lower than", 200, 200)
	// go-tdx-guest prints TEE_TCB_SVN with %d of a byte slice: a decimal
	// list, [3 0 5 ...].
	svnRe   = near(pattern(`(TEE TCB security-version number|QE security-version number|PCE security-version number|report's GUEST_SVN|firmware build number) (\[[0-9 ]*\]|[0-9]+) is less than the required minimum (\[[0-9 ]*\]|[0-9]+)`), "required minimum", 120, 80)
	fwAPIRe = pattern(`firmware API version \(([0-9]+\.[0-9]+)\) is less than the required minimum \(([0-9]+\.[0-9]+)\)`)
	// go-tdx-guest; newer builds say which TCB (TDX or Enclave).
	tcbStatusRe = pattern(`unable to find latest status of (?:TDX |Enclave )?TCB, it is now OutOfDate`)
	// go-sev-guest: a minimum (MinimumMitigationVector), so tcb_mismatch
	// like in package attest.
	mitigationRe = near(pattern(`((?:launch|current) mitigation vector) \((0x[0-9a-f]+)\) is missing required bits; expected at least \((0x[0-9a-f]+)\)`), "mitigation vector", 10, 120)
	// Configuration claims that go-sev-guest, go-tdx-guest and Contrast
	// check besides the fields; one pattern each so that each has a literal
	// start to skip to.
	otherClaimRes = []finder{
		pattern(`found unauthorized [A-Za-z() ]+? capability`),
		pattern(`required single socket restriction not present`),
		pattern(`unauthorized platform feature [A-Z]+ enabled`),
		pattern(`required platform feature [A-Z]+ not enabled`),
		pattern(`report VMPL [0-9]+ is not [0-9]+`),
		pattern(`XFAM mismatch: got [0-9a-f]+, want [0-9a-f]+`),
		pattern(`unauthorized (?:xfam|tdAttributes) 0x[0-9a-f]+ as [A-Za-z0-9]+ 0x[0-9a-f]+ bits are (?:set|unset)`),
		pattern(`author key missing when required`),
		pattern(`found unauthorized memory encryption mode`),
		pattern(`chiphertext hiding in DRAM isn't enforced`),
		pattern(`required ciphertext hiding in DRAM not enforced`),
		pattern(`required memory alias check hasn't been completed`),
		pattern(`unauthorized feature SEV-TIO enabled`),
		pattern(`required policy ABI version \([0-9]+\.[0-9]+\) is greater than the report's ABI version \([0-9]+\.[0-9]+\)`),
		// Contrast's TDX validator could not read the PCK certificate's
		// PIID; ccproxy names the unreadable PCK certificate the same way.
		pattern(`reading PIID from quote: [^"\n]*`),
	}
	// go-sev-guest: the report's CHIP_ID is not the one its VCEK certifies;
	// attest calls such evidence inconsistent with its own certificates.
	chipHWIDRe = pattern(`report field CHIP_ID ([0-9a-fA-F]*) is not the same as the VCEK certificate's HWID ([0-9a-fA-F]*)`)
	// Contrast (some releases): an RTMR of the quote is not among the
	// trusted values when it builds the validation options.
	rtmrNotTrustedRe = pattern(`generating validation options: (RTMR\[[0-9]\])[^"\n]*? is not trusted`)
	// Contrast's insecure validator: REPORT_DATA is not bound to this
	// handshake.
	insecureReportDataRe = pattern(`reportData mismatch: expected ([0-9a-fA-F]*), got ([0-9a-fA-F]*)`)

	// Signature and chain failures: only read inside a validator's error,
	// because outside it "signed by unknown authority" is any TLS client's
	// complaint about any server.
	verifyCauseRe = pattern(`^(?:verifying report|report signature verification error|converting report to proto|unmarshaling attestation|getting attestation from report|attestation missing report)|could not be verified by any trusted roots|ECDSA verification failure|unable to verify message digest|certificate signed by unknown authority|root certificate's public key does not match|QE Report Data does not match`)
	fetchCauseRe  = pattern(`could not fetch|kdsintf|failed to fetch|unable to receive|GetCollateral|dial tcp|no such host|timeout`)
	validatingRe  = pattern(`^validating`)
)

// fieldSize is the size in bytes of the report and quote fields whose
// mismatch texts quote them, so that a hex value that ran into the next line
// of a paste can be cut back to its real length.
var fieldSize = map[string]int{
	"REPORT_DATA": 64, "HOST_DATA": 32, "FAMILY_ID": 16, "IMAGE_ID": 16, "REPORT_ID": 32,
	"REPORT_ID_MA": 32, "MEASUREMENT": 48, "CHIP_ID": 64,
	"MR_SEAM": 48, "TD_ATTRIBUTES": 8, "XFAM": 8, "MR_TD": 48, "MR_CONFIG_ID": 48, "MR_OWNER": 48,
	"MR_OWNER_CONFIG": 48, "QE_VENDOR_ID": 16, "RTMR": 48,
	"ID_KEY_DIGEST": 48, "AUTHOR_KEY_DIGEST": 48,
}

func fieldSizeOf(field string) int {
	if strings.HasPrefix(field, "RTMR[") {
		return fieldSize["RTMR"]
	}
	return fieldSize[field]
}

// validatorCtx is what a finding inside a validator's error knows about it.
type validatorCtx struct {
	name, platform, product, nonce string
	// sub is the index of the sub-validator (one per reference value) in
	// the newest CLIs' combined validator, or "".
	sub string
}

func (v validatorCtx) values() Values {
	var vs Values
	if v.name == "" && v.sub == "" {
		return nil
	}
	if v.name != "" {
		vs = append(vs, Value{"validator", v.name})
	}
	if v.sub != "" {
		vs = append(vs, Value{"sub_validator", v.sub})
	}
	if v.platform != "" {
		vs = append(vs, Value{"platform", v.platform})
	}
	if v.product != "" {
		vs = append(vs, Value{"product", v.product})
	}
	if v.nonce != "" {
		vs = append(vs, Value{"nonce", v.nonce})
	}
	return vs
}

func parseValidatorName(name string) validatorCtx {
	v := validatorCtx{name: name}
	parts := strings.Split(name, "-")
	switch strings.ToLower(parts[0]) {
	case "snp":
		v.platform = "snp"
		if len(parts) >= 3 {
			v.product = strings.Join(parts[2:], "-")
		}
	case "tdx":
		v.platform = "tdx"
	}
	return v
}

// maxSegment bounds one validator's cause; real ones are a few hundred bytes.
const maxSegment = 8192

// validatorHeader is one "validator <name> failed:" or "sub-validator <n>:"
// in the text.
type validatorHeader struct {
	start, end int
	name       string // the validator's name; "" for a sub-validator
	sub        string // the sub-validator's index; "" for a validator
}

// validatorHeaders finds both kinds of header, in order.
func validatorHeaders(text string) []validatorHeader {
	var hs []validatorHeader
	for _, m := range subValidatorRe.FindAllStringSubmatchIndex(text, maxMatchesPerRule) {
		hs = append(hs, validatorHeader{start: m[0], end: m[1], sub: text[m[2]:m[3]]})
	}
	subs := len(hs)
	for _, m := range validatorRe.FindAllStringSubmatchIndex(text, maxMatchesPerRule) {
		hs = append(hs, validatorHeader{start: m[0], end: m[1], name: text[m[2]:m[3]]})
	}
	if subs == 0 || subs == len(hs) {
		return hs
	}
	sort.SliceStable(hs, func(i, j int) bool { return hs[i].start < hs[j].start })
	// A validator header never lies inside a sub-validator header, but keep
	// the list free of overlaps whatever the text.
	out := hs[:1]
	for _, h := range hs[1:] {
		if h.start >= out[len(out)-1].end {
			out = append(out, h)
		}
	}
	return out
}

func ruleValidators(s *scanner) {
	hs := validatorHeaders(s.text)
	// segEnd is where the cause after header i ends: at the next header, at
	// the closing quote of the CLI's desc = "...", or after maxSegment.
	segEnd := func(i int) int {
		end := len(s.text)
		if i+1 < len(hs) {
			end = hs[i+1].start
		}
		end = min(end, hs[i].end+maxSegment)
		if q := strings.IndexByte(s.text[hs[i].end:end], '"'); q >= 0 {
			end = hs[i].end + q
		}
		return end
	}
	// wrapper reports whether header i has no cause of its own but directly
	// wraps the next header ("validator X failed: sub-validator 3: ...").
	wrapper := func(i int) bool {
		return i+1 < len(hs) && segEnd(i) == hs[i+1].start && strings.TrimSpace(s.text[hs[i].end:hs[i+1].start]) == ""
	}
	var (
		v          validatorCtx
		nameInSub  bool // v.name came from a validator wrapped by sub-validator v.sub
		chainStart int  // where the run of wrappers that leads to this header starts
		errStart   int  // where the first header of this error is: its gRPC context lies before
	)
	for i, h := range hs {
		// A nonce prefix right before this header starts a new chain;
		// otherwise a header that directly follows the previous one
		// belongs to the same chain.
		if n := nonceRe.FindStringSubmatch(s.text[max(0, h.start-200):h.start]); n != nil {
			v, nameInSub, errStart = validatorCtx{nonce: trimHex(n[1], 32)}, false, h.start
		} else if i == 0 || !contiguousHeaders(s.text, hs[i-1], h) {
			v, nameInSub, errStart = validatorCtx{}, false, h.start
		}
		if i == 0 || !wrapper(i-1) {
			chainStart = h.start
		}
		if h.sub != "" {
			if nameInSub {
				// The previous validator sat inside the previous
				// sub-validator; this one is another.
				v.name, v.platform, v.product, nameInSub = "", "", "", false
			}
			v.sub = h.sub
		} else {
			inSub := i > 0 && hs[i-1].sub != "" && wrapper(i-1)
			p := parseValidatorName(h.name)
			v.name, v.platform, v.product = p.name, p.platform, p.product
			if inSub {
				nameInSub = true
			} else {
				v.sub, nameInSub = "", false
			}
		}
		// Claim only what is explained: the header and each recognised
		// part. An unquoted log may hold unrelated lines before the next
		// validator, and those stay for the other rules.
		s.claim(h.start, h.end)
		if wrapper(i) {
			continue
		}
		end := segEnd(i)
		hits := evidenceHits(s, h.end, end)
		if len(hits) == 0 {
			// A cause without a known field is one line (errors.Join puts
			// each validator on its own).
			causeEnd := min(end, s.lineEnd(firstNonBlank(s.text, h.end)))
			hits = []hit{causeHit(s, h.end, causeEnd)}
		}
		for _, ht := range hits {
			s.claim(ht.start, ht.end)
		}
		header := s.text[chainStart:h.end]
		for _, ht := range hits {
			ht.f.Values = append(v.values(), ht.f.Values...)
			ht.f.Values = s.connValues(errStart, ht.f.Values...)
			// Quote the validator and the part of its cause this finding is about.
			quoted := header + " " + strings.TrimSpace(s.text[ht.start:ht.end])
			if prefix := strings.TrimSpace(s.text[h.end:ht.start]); prefix != "" && len(prefix) < 64 && !strings.Contains(prefix, ";") {
				quoted = header + " " + prefix + " " + s.text[ht.start:ht.end]
			}
			s.addExcerpt(chainStart, quoted, ht.f)
		}
	}
}

func firstNonBlank(t string, pos int) int {
	for pos < len(t) && t[pos] == ' ' {
		pos++
	}
	return pos
}

// contiguousHeaders reports whether header h starts where the segment of
// the previous header prev could have ended: the same quoted message.
func contiguousHeaders(text string, prev, h validatorHeader) bool {
	between := text[prev.end:h.start]
	return len(between) <= maxSegment && !strings.Contains(between, "\"")
}

// causeHit classifies a validator's cause that names no field: a signature or
// chain failure, an unparsed claim mismatch, or something else.
func causeHit(s *scanner, start, end int) hit {
	cause := strings.TrimSpace(s.text[start:end])
	short := excerpt(cause)
	switch {
	case verifyCauseRe.MatchString(cause):
		f := Finding{
			Mode:    string(failure.EvidenceInvalid),
			Summary: "the evidence's signature or certificate chain did not verify",
			Values:  Values{{"cause", short}},
			Meaning: "The validator could not verify the attestation report itself: its signature, or the " +
				"certificate chain from the signing key (SNP VCEK / TDX PCK) up to the AMD or Intel root. " +
				"Either the evidence is corrupted or forged, it was checked against the roots of another " +
				"product (for example Milan instead of Genoa), or certificates and revocation lists could not be fetched.",
			NextSteps: []string{
				fmt.Sprintf("Save the Coordinator's certificate and check it offline: `ccproxy probe --coordinator %s`, then `ccproxy attest <certificate>` names the failing step.", s.addrOrPlaceholder()),
				"Several validators run per platform and product; this one failing is only the cause when no other validator for the same evidence succeeded.",
			},
		}
		if fetchCauseRe.MatchString(cause) {
			f.NextSteps = append(f.NextSteps, "The cause mentions fetching: make sure the machine running the CLI can reach AMD's key distribution service (SNP) or Intel's PCS (TDX) over HTTPS, or that a proxy is configured.")
		}
		return hit{start: start, end: end, f: f}
	case validatingRe.MatchString(cause):
		return hit{start: start, end: end, f: Finding{
			Mode:    string(failure.ReferenceValueMismatch),
			Summary: "a claim in the evidence differs from the manifest's reference values",
			Values:  Values{{"cause", short}},
			Meaning: "The evidence verified, but one of its claims does not match the reference values in manifest.json; the cause names which.",
			NextSteps: []string{
				"Compare the named field with manifest.json's ReferenceValues for this platform (`jq .ReferenceValues manifest.json`).",
				"Check that the CLI that generated the manifest and the deployed runtime come from the same Contrast release: `contrast --version` against `kubectl get runtimeclasses`.",
			},
		}}
	default:
		return hit{start: start, end: end, f: Finding{
			Mode:    ModeValidatorFailed,
			Summary: "an attestation validator failed",
			Values:  Values{{"cause", short}},
			Meaning: "The CLI's validator rejected the Coordinator's evidence for a reason this tool does not classify; the cause is quoted as given.",
			NextSteps: []string{
				fmt.Sprintf("Run `ccproxy probe --coordinator %s` to see the evidence and the failing check.", s.addrOrPlaceholder()),
			},
		}}
	}
}

// hit is a finding at a span of the text, before context is added.
type hit struct {
	start, end int
	f          Finding
}

// evidenceHits finds every field mismatch and TCB or platform complaint in
// text[start:end], in order.
func evidenceHits(s *scanner, start, end int) []hit {
	var hits []hit
	sub := s.text[start:end]
	find := func(re finder, mk func(g func(int) string) Finding) {
		for _, m := range re.FindAllStringSubmatchIndex(sub, maxMatchesPerRule) {
			g := func(i int) string {
				if m[2*i] < 0 {
					return ""
				}
				return sub[m[2*i]:m[2*i+1]]
			}
			hits = append(hits, hit{start: start + m[0], end: start + m[1], f: mk(g)})
		}
	}
	// Field mismatches: the span ends where the expected value's field size
	// ends, so that a value that ran into the next pasted line does not
	// claim the start of that line.
	fields := func(re finder, platform string) {
		for _, m := range re.FindAllStringSubmatchIndex(sub, maxMatchesPerRule) {
			field := strings.ToUpper(sub[m[2]:m[3]])
			f := fieldFinding(s, platform, field, sub[m[4]:m[5]], sub[m[6]:m[7]])
			end := m[1]
			if size := fieldSizeOf(field); size > 0 && !strings.HasPrefix(sub[m[6]:], "[") {
				end = min(end, m[6]+2*size)
			}
			hits = append(hits, hit{start: start + m[0], end: start + end, f: f})
		}
	}
	fields(snpFieldRe, "snp")
	fields(tdxFieldRe, "tdx")
	find(gotWantRe, func(g func(int) string) Finding {
		return policyHashFinding("", trimHex(g(1), 32), hashList(g(2), 32), "")
	})
	find(keyNotTrustedRe, func(g func(int) string) Finding {
		return keyNotTrustedFinding(g(1), trimHex(g(2), 48))
	})
	find(vcpuRe, func(g func(int) string) Finding {
		f := measurementFinding("MEASUREMENT", "", "")
		f.Summary = "the SNP launch measurement matches none of the vCPU counts tried"
		f.Meaning = "The SNP launch measurement depends on the number of vCPUs, so the CLI recomputed the expected " +
			"measurement for every count in its range and none matched: the VM booted other firmware, kernel, " +
			"initrd or command line than the reference values describe — a runtime from another Contrast release, " +
			"or a changed VM configuration."
		if g(1) != "" {
			f.Values = append(f.Values, Value{"vcpu_range", g(1) + "-" + g(2)})
		}
		return f
	})
	find(chipIDRe, func(g func(int) string) Finding {
		return platformFinding("CHIP_ID", trimHex(g(1), 64))
	})
	find(piidRe, func(g func(int) string) Finding {
		return platformFinding("PIID", trimHex(g(1), 16))
	})
	find(tcbLowerRe, func(g func(int) string) Finding {
		return tcbFinding(g(1), g(2), g(3), g(4))
	})
	find(svnRe, func(g func(int) string) Finding {
		return tcbFinding(g(1), g(2), "required minimum", g(3))
	})
	find(fwAPIRe, func(g func(int) string) Finding {
		return tcbFinding("firmware API version", g(1), "required minimum", g(2))
	})
	find(tcbStatusRe, func(func(int) string) Finding {
		return tcbFinding("TCB status", "OutOfDate", "required status", "UpToDate")
	})
	find(mitigationRe, func(g func(int) string) Finding {
		return tcbFinding(g(1), g(2), "required minimum (MinimumMitigationVector)", g(3))
	})
	for _, re := range otherClaimRes {
		find(re, otherClaimFinding)
	}
	find(chipHWIDRe, func(g func(int) string) Finding {
		return Finding{
			Mode:    string(failure.EvidenceInvalid),
			Summary: "the report's CHIP_ID is not the chip its VCEK certificate was issued to",
			Values:  Values{{"chip_id", trimHex(g(1), 64)}, {"vcek_hwid", trimHex(g(2), 64)}},
			Meaning: "The report was signed with a VCEK, but it names another chip than the one that VCEK certifies: " +
				"the evidence is inconsistent with its own certificates (replayed, assembled from parts, or corrupted).",
			NextSteps: []string{
				"Check the Coordinator's certificate offline: `ccproxy attest <certificate>` prints the chip ID and the VCEK's HWID.",
			},
		}
	})
	find(rtmrNotTrustedRe, func(g func(int) string) Finding {
		return measurementFinding(g(1), "", "")
	})
	find(insecureReportDataRe, func(g func(int) string) Finding {
		return reportDataFinding(s, trimHex(g(2), 64), trimHex(g(1), 64))
	})
	sortHits(hits)
	return hits
}

func otherClaimFinding(g func(int) string) Finding {
	return Finding{
		Mode:    string(failure.ReferenceValueMismatch),
		Summary: "the platform's configuration differs from the reference values: " + g(0),
		Values:  Values{{"claim", g(0)}},
		Meaning: "The evidence verified, but a configuration claim (guest policy, platform features, VMPL, " +
			"TD attributes or XFAM) differs from what the manifest's reference values allow. " +
			"These depend on the host's firmware settings and on the runtime's VM configuration.",
		NextSteps: []string{
			"Compare the named claim with manifest.json's ReferenceValues (`jq .ReferenceValues manifest.json`) and with the defaults `contrast --version` prints for your platform.",
			"If the host's firmware settings changed (SMT, TSME, debug), restore them or regenerate the reference values for the new configuration after review.",
		},
	}
}

func sortHits(h []hit) {
	sort.SliceStable(h, func(i, j int) bool { return h[i].start < h[j].start })
}

// ruleEvidenceFields explains mismatch texts that stand alone (ccproxy's own
// output, go-sev-guest or go-tdx-guest used directly, the newest CLI's policy
// hash check).
func ruleEvidenceFields(s *scanner) {
	for _, h := range evidenceHits(s, 0, len(s.text)) {
		if !s.free(h.start, h.end) {
			continue
		}
		s.claim(h.start, h.end)
		h.f.Values = s.connValues(h.start, h.f.Values...)
		s.add(h.start, h.end, h.f)
	}
}

// fieldFinding explains "report field F is X. Expect Y" (SNP) and "quote
// field F is X. Expect Y" (TDX).
func fieldFinding(s *scanner, platform, field, got, want string) Finding {
	size := fieldSizeOf(field)
	got, want = fieldHex(got, size), fieldHex(want, size)
	switch field {
	case "HOST_DATA":
		return policyHashFinding(field, got, []string{want}, "")
	case "MR_CONFIG_ID":
		// Contrast puts its 32-byte policy hash into the first half of the
		// 48-byte MR_CONFIG_ID and zeroes the rest.
		tail := ""
		if len(got) == 96 && strings.Trim(got[64:], "0") != "" {
			tail = got[64:]
		}
		return policyHashFinding(field, trimHex(got, 32), []string{trimHex(want, 32)}, tail)
	case "MEASUREMENT", "MR_TD":
		return measurementFinding(field, got, want)
	case "MR_SEAM":
		return mrSeamFinding(got, want)
	case "REPORT_DATA":
		return reportDataFinding(s, got, want)
	case "CHIP_ID":
		return platformFinding("CHIP_ID", got, want)
	case "QE_VENDOR_ID":
		// Not a reference value of the manifest: Contrast requires Intel's
		// quoting enclave, and attest names another vendor's quote
		// evidence the Coordinator cannot vouch for.
		return Finding{
			Mode:    string(failure.EvidenceInvalid),
			Summary: "the TDX quote was made by another quoting enclave than Intel's",
			Values:  Values{{"field", field}, {"observed", got}, {"expected", want}},
			Meaning: "Contrast requires quotes from Intel's quoting enclave (QE_VENDOR_ID " + orNone(want) + "); this one names " + orNone(got) + ", so its signature chain does not vouch for the TD the way Contrast needs.",
			NextSteps: []string{
				"Check the host's quote generation service (QGS) and DCAP packages: the quote must come from Intel's QE.",
			},
		}
	}
	if strings.HasPrefix(field, "RTMR[") {
		return measurementFinding(field, got, want)
	}
	return Finding{
		Mode:    string(failure.ReferenceValueMismatch),
		Summary: fmt.Sprintf("the %s field %s differs from the reference value", platform, field),
		Values:  Values{{"field", field}, {"observed", got}, {"expected", want}},
		Meaning: fmt.Sprintf("The evidence verified, but its %s is %s where the reference values in the manifest require %s.", field, orNone(got), orNone(want)),
		NextSteps: []string{
			"Compare with manifest.json's ReferenceValues (`jq .ReferenceValues manifest.json`) and regenerate the manifest with the CLI release that matches the deployed runtime.",
		},
	}
}

// policyHashFinding explains a Coordinator policy hash that is not among
// the expected ones (wants: one, or several for the newest CLIs).
func policyHashFinding(field, got string, wants []string, tail string) Finding {
	vs := Values{}
	if field != "" {
		vs = append(vs, Value{"field", field})
	}
	vs = append(vs, Value{"observed_policy_hash", got})
	expected, expectedShort := orNone(""), orNone("")
	switch len(wants) {
	case 0:
		vs = append(vs, Value{"expected_policy_hash", ""})
	case 1:
		vs = append(vs, Value{"expected_policy_hash", wants[0]})
		expected, expectedShort = orNone(wants[0]), short(wants[0])
	default:
		vs = append(vs, Value{"expected_policy_hashes", strings.Join(wants, ", ")})
		shorts := make([]string, len(wants))
		for i, w := range wants {
			shorts[i] = short(w)
		}
		expected = "one of " + strings.Join(wants, ", ")
		expectedShort = "one of " + strings.Join(shorts, ", ")
	}
	if tail != "" {
		vs = append(vs, Value{"mr_config_id_tail", tail})
	}
	where := "its policy hash"
	switch field {
	case "HOST_DATA":
		where = "HOST_DATA (SNP), which holds the hash of the policy the Coordinator's VM was started with,"
	case "MR_CONFIG_ID":
		where = "the first 32 bytes of MR_CONFIG_ID (TDX), which hold the hash of the policy the Coordinator's VM was started with,"
	}
	source := "the manifest's policy entry with role coordinator, or --coordinator-policy-hash"
	if len(wants) > 1 {
		source = "every policy entry with role coordinator in the manifest"
	}
	f := Finding{
		Mode:    string(failure.PolicyHashMismatch),
		Summary: fmt.Sprintf("the Coordinator runs with policy hash %s, the CLI expects %s", short(got), expectedShort),
		Values:  vs,
		Meaning: fmt.Sprintf("The Coordinator's evidence is genuine, but %s says %s while the CLI expects %s "+
			"(%s). The Coordinator "+
			"was deployed from another Contrast release or another YAML than the one the CLI generated its "+
			"manifest for — or the address does not reach the Coordinator you deployed.", where, orNone(got), expected, source),
		NextSteps: []string{
			"Compare versions: `contrast --version` against the Coordinator's image: `kubectl get pods -l app.kubernetes.io/name=coordinator -o jsonpath='{.items[*].spec.containers[*].image}'`.",
			"Read the expected hash from the manifest: `jq -r '.Policies | to_entries[] | select(.value.Role == \"coordinator\") | .key' manifest.json` (older CLIs: coordinator-policy.sha256) and compare it with " + orNone(got) + ".",
			"Redeploy the Coordinator from the same release and generated YAML as the manifest; on bare metal, pass the hash of the Coordinator you actually deployed with --coordinator-policy-hash.",
		},
	}
	if tail != "" {
		f.NextSteps = append(f.NextSteps, "The last 16 bytes of MR_CONFIG_ID are not zero ("+tail+"): this VM was not configured by Contrast at all.")
	}
	return f
}

// hashList reads the expected value(s) of "want <hex>" or "want [<hex>
// <hex>]": each cut to size bytes. A list whose blanks a paste lost (a line
// break in place of a blank) is split at every size bytes.
func hashList(v string, size int) []string {
	if !strings.HasPrefix(v, "[") {
		return []string{trimHex(v, size)}
	}
	var out []string
	for _, tok := range strings.FieldsFunc(strings.Trim(v, "[]"), func(r rune) bool { return r == ' ' || r == ',' }) {
		tok = strings.ToLower(tok)
		for len(tok) > 2*size && len(tok)%(2*size) == 0 {
			out = append(out, tok[:2*size])
			tok = tok[2*size:]
		}
		out = append(out, trimHex(tok, size))
	}
	return out
}

func measurementFinding(field, got, want string) Finding {
	vs := Values{{"field", field}}
	if got != "" || want != "" {
		vs = append(vs, Value{"observed", got}, Value{"expected", want})
	}
	return Finding{
		Mode:    string(failure.MeasurementMismatch),
		Summary: fmt.Sprintf("the launch measurement %s differs from the reference value", field),
		Values:  vs,
		Meaning: fmt.Sprintf("%s is a hash of what the Coordinator's VM booted (firmware, kernel, initrd, command line; "+
			"for TDX also the TDX module and the runtime measurements). It is %s but the manifest's reference values "+
			"expect %s: the node runs a Contrast runtime (node installer) from another release than the CLI that "+
			"generated the manifest, or the VM was started with another configuration.", field, orNone(got), orNone(want)),
		NextSteps: []string{
			"Compare the expected value with the `launch digest` (SNP) or MRTD/RTMRs (TDX) that `contrast --version` prints for your platform.",
			"Check that the Coordinator runs the runtime class of this release: `kubectl get pods -l app.kubernetes.io/name=coordinator -o jsonpath='{.items[*].spec.runtimeClassName}'` must equal the `runtime handler` in `contrast --version`.",
			"Install the runtime of the CLI's release (`kubectl apply -f runtime-<platform>.yml` of that release) or use the CLI that matches the deployed runtime.",
		},
	}
}

func reportDataFinding(s *scanner, got, want string) Finding {
	return Finding{
		Mode:    string(failure.ReportDataMismatch),
		Summary: "the evidence is not bound to this handshake's key and nonce",
		Values:  Values{{"observed", got}, {"expected", want}},
		Meaning: "REPORT_DATA must be SHA-512 of the certificate's public key followed by the CLI's nonce. The evidence " +
			"is genuine but was made for another key or nonce: it was replayed, or something between the CLI and the " +
			"Coordinator terminated TLS and presented its own certificate with the Coordinator's evidence inside.",
		NextSteps: []string{
			"Make sure every hop between the CLI and the Coordinator forwards TCP and never terminates TLS (load balancer in TCP mode, socat, kubectl port-forward, ccproxy).",
			fmt.Sprintf("Probe once directly and once through the usual path (`ccproxy probe --coordinator %s`); the hop that changes the result is the one terminating TLS.", s.addrOrPlaceholder()),
		},
	}
}

// platformFinding explains evidence from a machine the reference values do
// not allow: an SNP CHIP_ID outside AllowedChipIDs (or not the one ChipID
// option), or a TDX PIID outside AllowedPIIDs.
func platformFinding(field, id string, expected ...string) Finding {
	name, list, what := "chip_id", "AllowedChipIDs", "the SNP report's CHIP_ID, which is unique to one physical AMD processor,"
	platform := "snp"
	if field == "PIID" {
		name, list, what = "piid", "AllowedPIIDs", "the TDX platform instance ID (PIID, from the PCK certificate in the quote), which identifies one physical Intel platform,"
		platform = "tdx"
	}
	vs := Values{{"field", field}, {name, id}}
	if len(expected) > 0 && expected[0] != "" {
		vs = append(vs, Value{"expected", expected[0]})
	}
	return Finding{
		Mode:    string(failure.ReferenceValueMismatch),
		Summary: fmt.Sprintf("the evidence comes from a machine the manifest does not allow (%s %s)", name, short(id)),
		Values:  vs,
		Meaning: fmt.Sprintf("The evidence verified, but %s is %s, which is not in the manifest's %s list: "+
			"the Coordinator was scheduled on another node than the allowed ones, the allowed list was written for "+
			"other hardware, or the evidence comes from a machine nobody vetted.", what, orNone(id), list),
		NextSteps: []string{
			fmt.Sprintf("List the allowed values: `jq '.ReferenceValues.%s[].%s' manifest.json`.", platform, list),
			"See where the Coordinator runs: `kubectl get pods -l app.kubernetes.io/name=coordinator -o wide`.",
			fmt.Sprintf("If that machine is trusted, add %s to ReferenceValues.%s[].%s in manifest.json and set the manifest again; otherwise pin the Coordinator to the allowed nodes (nodeSelector or affinity).", orNone(id), platform, list),
		},
	}
}

// keyNotTrustedFinding explains go-sev-guest's "report ID key not trusted"
// and "report author key not trusted".
func keyNotTrustedFinding(kind, digest string) Finding {
	field := "ID_KEY_DIGEST"
	if kind == "author" {
		field = "AUTHOR_KEY_DIGEST"
	}
	noBlock := digest != "" && strings.Trim(digest, "0") == ""
	f := Finding{
		Mode:    string(failure.ReferenceValueMismatch),
		Summary: fmt.Sprintf("the SNP report's %s %s is not a trusted %s key", field, short(digest), kind),
		Values:  Values{{"field", field}, {"observed", digest}},
		Meaning: fmt.Sprintf("The evidence verified, but the reference values require an ID block and the report's %s "+
			"(SHA-384 of the %s key that signed the ID block the VM was launched with) is %s, which is not among the "+
			"trusted key hashes. Contrast's runtime launches each VM with an ID block whose key is derived from the "+
			"expected launch measurement and guest policy (the newest CLIs derive it for every vCPU count they try), "+
			"so an untrusted key means the VM was launched without Contrast's ID block or with one made for another "+
			"measurement or guest policy: a runtime from another release or a changed VM configuration.", field, kind, orNone(digest)),
		NextSteps: []string{
			"Check that the Coordinator runs the runtime class of the CLI's release: `kubectl get pods -l app.kubernetes.io/name=coordinator -o jsonpath='{.items[*].spec.runtimeClassName}'` must equal the `runtime handler` in `contrast --version`.",
			"Compare the manifest's SNP reference values (`jq '.ReferenceValues.snp' manifest.json`: TrustedMeasurement, GuestPolicy) with the platform, and regenerate them for the platform and runtime the cluster uses: `contrast generate --reference-values <platform> ...`, then set the manifest again.",
		},
	}
	if noBlock {
		f.Summary = "the Coordinator's VM was launched without an ID block (" + field + " is all zeros)"
		f.NextSteps = append([]string{"The digest is all zeros: the VM was started without any ID block, so its runtime is not Contrast's runtime of this release (or its VM configuration was changed). Reinstall the runtime: `kubectl apply -f runtime-<platform>.yml` of the CLI's release."}, f.NextSteps...)
	}
	return f
}

// mrSeamFinding explains a TDX MR_SEAM mismatch: the measurement of the TDX
// module, which the host's firmware loads, not of what the guest booted.
func mrSeamFinding(got, want string) Finding {
	return Finding{
		Mode:    string(failure.ReferenceValueMismatch),
		Summary: "the TDX module's measurement MR_SEAM differs from the reference value",
		Values:  Values{{"field", "MR_SEAM"}, {"observed", got}, {"expected", want}},
		Meaning: fmt.Sprintf("MR_SEAM is the measurement of the Intel TDX module the host runs (loaded by the host's "+
			"firmware, not by Contrast). It is %s but the manifest's reference values expect %s: the host runs another "+
			"TDX module version than the one the reference values were written for.", orNone(got), orNone(want)),
		NextSteps: []string{
			"Check the TDX module version on the host (`dmesg | grep -i 'tdx module'`) against the one the reference values were made for.",
			"If the new module is trusted, update MrSeam in ReferenceValues.tdx of manifest.json (or regenerate with `contrast generate --reference-values <platform>` of a release that knows it) and set the manifest again.",
		},
	}
}

func tcbFinding(what, observed, minWhat, minimum string) Finding {
	return Finding{
		Mode:    string(failure.TCBMismatch),
		Summary: fmt.Sprintf("%s %s is below the %s %s", what, observed, minWhat, minimum),
		Values:  Values{{"component", what}, {"observed", observed}, {"minimum", minimum}},
		Meaning: "The platform's trusted computing base — the versions of its security firmware (SNP: bootloader, " +
			"TEE, SNP firmware, microcode; TDX: TEE TCB SVNs, QE and PCE) — is older than the minimum the manifest's " +
			"reference values accept.",
		NextSteps: []string{
			"Update the host's firmware/microcode to at least the minimum, then restart the Coordinator.",
			"On bare metal the minimum is filled in by hand: if this host is trusted at its current level, set MinimumTCB (SNP) or the minimum SVNs (TDX) in manifest.json to the observed values and set the manifest again.",
		},
	}
}

// fieldHex normalises a field value: hex as is, a decimal byte list
// "[12 0 255]" as hex; a hex value longer than the field (a paste that ran
// into the next line) is cut to the field's size.
func fieldHex(v string, size int) string {
	v = strings.TrimSpace(v)
	if strings.HasPrefix(v, "[") {
		fields := strings.Fields(strings.Trim(v, "[]"))
		b := make([]byte, 0, len(fields))
		for _, f := range fields {
			n, err := strconv.ParseUint(f, 10, 8)
			if err != nil {
				return v
			}
			b = append(b, byte(n))
		}
		return hex.EncodeToString(b)
	}
	if size > 0 {
		return trimHex(v, size)
	}
	return strings.ToLower(v)
}

// trimHex lower-cases a hex value and cuts it to size bytes.
func trimHex(v string, size int) string {
	v = strings.ToLower(v)
	if len(v) > 2*size {
		v = v[:2*size]
	}
	return v
}

// short abbreviates a long hex value for summaries; values keep it whole.
func short(h string) string {
	if len(h) <= 16 {
		return orNone(h)
	}
	return h[:8] + "…" + h[len(h)-8:]
}

func orNone(v string) string {
	if v == "" {
		return "(empty)"
	}
	return v
}

// bareCauseRe finds a validator's cause that the CLI printed without a
// "validator <name> failed:" header: with a single validator the newest CLIs
// return its error as it is, after the nonce prefix or right after the
// handshake failure.
var bareCauseRe = pattern(`(?:with AtlsConnectionNonce [0-9a-fA-F]+: |authentication handshake failed: )((?:verifying report(?: signature)?|unmarshaling attestation|validating report (?:data|claims)): )`)

// noReportRe is the newest CLI's ErrBadValidator: a validator passed but
// handed over no report, so the Coordinator-policy check could not run and
// the CLI rejects the certificate. The relay sees the client reject a
// certificate its own check has nothing against.
var noReportRe = pattern(`validator did not produce a report`)

// ruleBareValidatorCause explains the header-less causes like those inside
// a validator's error.
func ruleBareValidatorCause(s *scanner) {
	s.each(noReportRe, func(m []int) {
		s.claim(m[0], m[1])
		s.add(m[0], m[1], Finding{
			Mode:    string(failure.ClientRejectedCertificate),
			Summary: "the CLI's validator accepted the evidence but produced no report to check the Coordinator policy on",
			Values:  s.connValues(m[0]),
			Meaning: "The newest CLIs check the Coordinator policy hash after a validator accepted the evidence, on the report the validator hands over. None came, so the CLI rejected the certificate for a reason inside the CLI, not in the evidence.",
			NextSteps: []string{
				"Report it to the Contrast project with the CLI version; meanwhile `ccproxy probe --coordinator <addr> --manifest manifest.json` checks the evidence independently.",
			},
		})
	})
	s.each(bareCauseRe, func(m []int) {
		start := m[2]
		end := s.lineEnd(start)
		if q := strings.IndexByte(s.text[start:end], '"'); q >= 0 {
			end = start + q
		}
		hits := evidenceHits(s, start, end)
		if len(hits) == 0 {
			hits = []hit{causeHit(s, start, end)}
		}
		for _, h := range hits {
			if !s.free(h.start, h.end) {
				continue
			}
			s.claim(h.start, h.end)
			h.f.Values = s.connValues(m[0], h.f.Values...)
			s.add(h.start, h.end, h.f)
		}
	})
}
