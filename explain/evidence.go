package explain

import (
	"encoding/hex"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/ccproxy-dev/ccproxy/failure"
)

// The CLI's validator errors (internal/atls in Contrast):
//
//	with AtlsConnectionNonce <hex>:  validator snp-0-GENOA failed: <cause>
//	 validator tdx-0 failed: <cause>
//
// Each validator that ran contributes one " validator <name> failed:" part
// (errors.Join, so they may also sit on separate lines). A cause may combine
// several mismatches, separated by "; " (go-sev-guest and go-tdx-guest use
// multierr).
var (
	validatorRe = pattern(`validator ([A-Za-z0-9_.\-]+) failed:`)
	nonceRe     = pattern(`with AtlsConnectionNonce ([0-9a-fA-F]+):\s*$`)

	// go-sev-guest: report field HOST_DATA is <hex>. Expect <hex>
	snpFieldRe = pattern(`report field ([A-Z_]+) is ([0-9a-fA-F]*)\. Expect ([0-9a-fA-F]+)`)
	// go-tdx-guest: quote field MR_CONFIG_ID is <hex>. Expect <hex>; older
	// releases printed the bytes as a decimal list: [12 0 255 ...].
	tdxFieldRe = pattern(`quote field ([A-Z_]+(?:\[[0-9]\])?) is (\[[0-9 ]*\]|[0-9a-fA-F]*)\. Expect (\[[0-9 ]*\]|[0-9a-fA-F]+)`)
	// Contrast, newest: the policy hash is checked after validation.
	gotWantRe = pattern(`wrong policy hash for Coordinator: got ([0-9a-fA-F]*), want ([0-9a-fA-F]+)`)
	vcpuRe    = pattern(`measurement does not match any vCPU count(?: from ([0-9]+) to ([0-9]+))?`)
	chipIDRe  = pattern(`chip ID ([0-9a-fA-F]+) not in allowed chip IDs`)
	piidRe    = pattern(`PIID ([0-9a-fA-F]+) not in allowed PIIDs`)
	// go-sev-guest: the report's REPORTED_TCB {...} is lower than the policy minimum TCB {...} in at least one component
	tcbLowerRe  = near(pattern(`the ((?:report's [A-Z_]+)|(?:TCB of the V\[CL\]EK certificate)) (\{[^{}]*\}) is lower than the (policy minimum (?:launch )?TCB) (\{[^{}]*\})`), "lower than", 200, 200)
	svnRe       = near(pattern(`(TEE TCB security-version number|QE security-version number|PCE security-version number|report's GUEST_SVN|firmware build number) ([0-9]+) is less than the required minimum ([0-9]+)`), "required minimum", 80, 30)
	fwAPIRe     = pattern(`firmware API version \(([0-9]+\.[0-9]+)\) is less than the required minimum \(([0-9]+\.[0-9]+)\)`)
	tcbStatusRe = pattern(`unable to find latest status of TCB, it is now OutOfDate`)
	// Configuration claims that go-sev-guest, go-tdx-guest and Contrast
	// check besides the fields; one pattern each so that each has a literal
	// start to skip to.
	otherClaimRes = []finder{
		pattern(`found unauthorized [A-Za-z() ]+? capability`),
		pattern(`required single socket restriction not present`),
		pattern(`unauthorized platform feature [A-Z]+ enabled`),
		pattern(`required platform feature [A-Z]+ not enabled`),
		pattern(`report VMPL [0-9]+ is not [0-9]+`),
		near(pattern(`(?:launch|current) mitigation vector \(0x[0-9a-f]+\) is missing required bits; expected at least \(0x[0-9a-f]+\)`), "mitigation vector", 10, 120),
		pattern(`XFAM mismatch: got [0-9a-f]+, want [0-9a-f]+`),
		pattern(`unauthorized (?:xfam|tdAttributes) 0x[0-9a-f]+ as [A-Za-z0-9]+ 0x[0-9a-f]+ bits are (?:set|unset)`),
		pattern(`report (?:ID|author) key not trusted[^;"]{0,140}`),
	}

	// Signature and chain failures: only read inside a validator's error,
	// because outside it "signed by unknown authority" is any TLS client's
	// complaint about any server.
	verifyCauseRe = pattern(`^(?:verifying report|report signature verification error|converting report to proto|unmarshaling attestation|getting attestation from report)|could not be verified by any trusted roots|ECDSA verification failure|unable to verify message digest|certificate signed by unknown authority|root certificate's public key does not match|QE Report Data does not match`)
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
}

func (v validatorCtx) values() Values {
	var vs Values
	if v.name == "" {
		return nil
	}
	vs = append(vs, Value{"validator", v.name})
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

func ruleValidators(s *scanner) {
	ms := validatorRe.FindAllStringSubmatchIndex(s.text, maxMatchesPerRule)
	nonce := ""
	for i, m := range ms {
		start, hdrEnd := m[0], m[1]
		end := len(s.text)
		if i+1 < len(ms) {
			end = ms[i+1][0]
		}
		end = min(end, hdrEnd+maxSegment)
		// The CLI's message ends with the closing quote of desc = "...".
		if q := strings.IndexByte(s.text[hdrEnd:end], '"'); q >= 0 {
			end = hdrEnd + q
		}
		// A nonce prefix right before this validator starts a new chain;
		// otherwise a validator that directly follows the previous one
		// belongs to the same chain.
		if n := nonceRe.FindStringSubmatch(s.text[max(0, start-200):start]); n != nil {
			nonce = trimHex(n[1], 32)
		} else if i == 0 || !contiguous(s.text, ms, i) {
			nonce = ""
		}
		v := parseValidatorName(s.group(m, 1))
		v.nonce = nonce
		// Claim only what is explained: the header and each recognised
		// part. An unquoted log may hold unrelated lines before the next
		// validator, and those stay for the other rules.
		s.claim(start, hdrEnd)
		hits := evidenceHits(s, hdrEnd, end)
		if len(hits) == 0 {
			// A cause without a known field is one line (errors.Join puts
			// each validator on its own).
			causeEnd := min(end, s.lineEnd(firstNonBlank(s.text, hdrEnd)))
			hits = []hit{causeHit(s, hdrEnd, causeEnd)}
		}
		for _, h := range hits {
			s.claim(h.start, h.end)
		}
		header := s.text[start:hdrEnd]
		for _, h := range hits {
			h.f.Values = append(v.values(), h.f.Values...)
			h.f.Values = s.connValues(start, h.f.Values...)
			// Quote the validator and the part of its cause this finding is about.
			quoted := header + " " + strings.TrimSpace(s.text[h.start:h.end])
			if prefix := strings.TrimSpace(s.text[hdrEnd:h.start]); prefix != "" && len(prefix) < 64 && !strings.Contains(prefix, ";") {
				quoted = header + " " + prefix + " " + s.text[h.start:h.end]
			}
			s.addExcerpt(start, quoted, h.f)
		}
	}
}

func firstNonBlank(t string, pos int) int {
	for pos < len(t) && t[pos] == ' ' {
		pos++
	}
	return pos
}

// contiguous reports whether validator match i starts where the segment of
// match i-1 could have ended: only blanks between them.
func contiguous(text string, ms [][]int, i int) bool {
	between := text[ms[i-1][1]:ms[i][0]]
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
			Mode:    ModeReferenceValueMismatch,
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
		return policyHashFinding("", trimHex(g(1), 32), trimHex(g(2), 32), "")
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
		return platformFinding("chip_id", "AllowedChipIDs", trimHex(g(1), 64))
	})
	find(piidRe, func(g func(int) string) Finding {
		return platformFinding("piid", "AllowedPIIDs", trimHex(g(1), 16))
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
	for _, re := range otherClaimRes {
		find(re, otherClaimFinding)
	}
	sortHits(hits)
	return hits
}

func otherClaimFinding(g func(int) string) Finding {
	return Finding{
		Mode:    ModeReferenceValueMismatch,
		Summary: "the platform's configuration differs from the reference values: " + g(0),
		Values:  Values{{"claim", g(0)}},
		Meaning: "The evidence verified, but a configuration claim (guest policy, platform features, VMPL, " +
			"mitigations, TD attributes or XFAM) differs from what the manifest's reference values allow. " +
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
		return policyHashFinding(field, got, want, "")
	case "MR_CONFIG_ID":
		// Contrast puts its 32-byte policy hash into the first half of the
		// 48-byte MR_CONFIG_ID and zeroes the rest.
		tail := ""
		if len(got) == 96 && strings.Trim(got[64:], "0") != "" {
			tail = got[64:]
		}
		return policyHashFinding(field, trimHex(got, 32), trimHex(want, 32), tail)
	case "MEASUREMENT", "MR_TD", "MR_SEAM":
		return measurementFinding(field, got, want)
	case "REPORT_DATA":
		return reportDataFinding(s, got, want)
	case "CHIP_ID":
		return platformFinding("chip_id", "AllowedChipIDs", got)
	}
	if strings.HasPrefix(field, "RTMR[") {
		return measurementFinding(field, got, want)
	}
	return Finding{
		Mode:    ModeReferenceValueMismatch,
		Summary: fmt.Sprintf("the %s field %s differs from the reference value", platform, field),
		Values:  Values{{"field", field}, {"observed", got}, {"expected", want}},
		Meaning: fmt.Sprintf("The evidence verified, but its %s is %s where the reference values in the manifest require %s.", field, orNone(got), orNone(want)),
		NextSteps: []string{
			"Compare with manifest.json's ReferenceValues (`jq .ReferenceValues manifest.json`) and regenerate the manifest with the CLI release that matches the deployed runtime.",
		},
	}
}

func policyHashFinding(field, got, want, tail string) Finding {
	vs := Values{}
	if field != "" {
		vs = append(vs, Value{"field", field})
	}
	vs = append(vs, Value{"observed_policy_hash", got}, Value{"expected_policy_hash", want})
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
	f := Finding{
		Mode:    string(failure.PolicyHashMismatch),
		Summary: fmt.Sprintf("the Coordinator runs with policy hash %s, the CLI expects %s", short(got), short(want)),
		Values:  vs,
		Meaning: fmt.Sprintf("The Coordinator's evidence is genuine, but %s says %s while the CLI expects %s "+
			"(the manifest's policy entry with role coordinator, or --coordinator-policy-hash). The Coordinator "+
			"was deployed from another Contrast release or another YAML than the one the CLI generated its "+
			"manifest for — or the address does not reach the Coordinator you deployed.", where, orNone(got), orNone(want)),
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

func platformFinding(name, list, id string) Finding {
	return Finding{
		Mode:    ModePlatformNotAllowed,
		Summary: fmt.Sprintf("the evidence comes from a machine the manifest does not allow (%s %s)", name, short(id)),
		Values:  Values{{name, id}},
		Meaning: fmt.Sprintf("The evidence verified, but the CPU that produced it is not in the manifest's %s list: "+
			"the Coordinator was scheduled on another node than the allowed ones.", list),
		NextSteps: []string{
			"See where the Coordinator runs: `kubectl get pods -l app.kubernetes.io/name=coordinator -o wide`.",
			fmt.Sprintf("If that machine is trusted, add %s to ReferenceValues[...].%s in manifest.json and set the manifest again; otherwise pin the Coordinator to the allowed nodes.", id, list),
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
