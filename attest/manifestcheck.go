package attest

import (
	"bytes"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/ccproxy-dev/ccproxy/internal/failure"
)

// ManifestError is a manifest the Contrast CLI refuses before it dials:
// `contrast set`, `contrast verify` and the SDK run the manifest's own
// validation (Contrast internal/manifest: Manifest.Validate and the
// reference values' Validate) and stop with "validating manifest: ...".
// Its Error is that text, in the CLI's words, so that what ccproxy prints
// is what `ccproxy explain` recognises.
type ManifestError struct {
	// Era is the release line the manifest was written by (its layout
	// tells), whose rules were applied.
	Era string
	// Reasons are the CLI's lines, one per failed field, in its order.
	Reasons []string
}

func (e *ManifestError) Error() string {
	return "validating manifest: " + strings.Join(e.Reasons, "\n")
}

// Mode is the failure mode of a refused manifest: manifest_invalid.
func (e *ManifestError) Mode() failure.Mode { return failure.ManifestInvalid }

// Manifest eras, told apart by the layout (docs/conformance.md, "era").
const (
	EraOldest  = "oldest"
	EraList    = "list"
	EraIDBlock = "ID block"
	EraNewest  = "newest"
)

// CheckManifestJSON runs the validation the Contrast CLI that wrote the
// manifest runs on it before any connection, and returns a *ManifestError
// with the CLI's words when that CLI refuses it; nil otherwise. It checks
// only what the CLI's Validate checks: syntax errors that make the CLI's
// json.Unmarshal fail are ParseManifest's.
//
// Sources (edgelesssys/contrast): internal/manifest/manifest.go
// (Manifest.Validate, PolicyEntry.Validate, Role.Validate, the
// validationError path format), internal/manifest/referencevalues.go
// (ReferenceValues, SNPReferenceValues and TDXReferenceValues Validate),
// internal/manifest/crypto.go (ParseSeedShareOwnerKey).
func CheckManifestJSON(data []byte) error {
	var raw rawManifest
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil // not the CLI's Validate: ParseManifest reports it
	}
	c := manifestChecker{raw: raw, era: raw.era()}
	if reasons := c.check(); len(reasons) > 0 {
		return &ManifestError{Era: c.era, Reasons: reasons}
	}
	return nil
}

// rawManifest keeps every value as the JSON carried it: the CLI's checks
// look at presence (nil pointers), lengths of hex strings and flags.
type rawManifest struct {
	Policies                map[string]json.RawMessage
	ReferenceValues         map[string]json.RawMessage
	WorkloadOwnerKeyDigests []string
	WorkloadOwnerPubKeys    *[]string
	SeedshareOwnerPubKeys   []string
}

// member returns a ReferenceValues member; JSON keys match
// case-insensitively, as encoding/json (and so the CLI) matches them.
func (r rawManifest) member(name string) json.RawMessage {
	for k, v := range r.ReferenceValues {
		if strings.EqualFold(k, name) {
			return v
		}
	}
	return nil
}

func isObject(v json.RawMessage) bool {
	b := bytes.TrimSpace(v)
	return len(b) > 0 && b[0] == '{'
}

// entries splits a reference-value list into its objects' members.
func entries(v json.RawMessage) []map[string]json.RawMessage {
	var out []map[string]json.RawMessage
	_ = json.Unmarshal(v, &out)
	return out
}

func has(e map[string]json.RawMessage, key string) bool {
	for k := range e {
		if strings.EqualFold(k, key) {
			return true
		}
	}
	return false
}

func get(e map[string]json.RawMessage, key string) json.RawMessage {
	for k, v := range e {
		if strings.EqualFold(k, key) {
			return v
		}
	}
	return nil
}

// era tells which release line wrote the manifest. The CLI writes every
// field of its struct (no omitempty), so a key's presence marks the era.
func (r rawManifest) era() string {
	snp, tdx := r.member("snp"), r.member("tdx")
	if isObject(snp) {
		return EraOldest
	}
	if r.WorkloadOwnerPubKeys != nil {
		return EraNewest
	}
	for _, e := range entries(snp) {
		if has(e, "PlatformInfo") || has(e, "Platform") || has(e, "AllowedChipIDs") {
			return EraNewest
		}
	}
	for _, e := range entries(tdx) {
		if has(e, "Rtmrs") || has(e, "MinTCBEvaluationDataNumber") || has(e, "Platform") {
			return EraNewest
		}
	}
	for _, e := range entries(snp) {
		if has(e, "GuestPolicy") {
			return EraIDBlock
		}
	}
	return EraList
}

type manifestChecker struct {
	raw rawManifest
	era string
}

// check returns the CLI's lines, in its order: policies, the Coordinator
// policy count (which returns at once, dropping the policies' lines), the
// reference values, secure and insecure platforms mixed (newest), owner
// keys.
func (c manifestChecker) check() []string {
	if c.era == EraOldest {
		return c.checkOldest()
	}
	var lines []string
	hashes := make([]string, 0, len(c.raw.Policies))
	for h := range c.raw.Policies {
		hashes = append(hashes, h)
	}
	// The CLI ranges over a map; ccproxy sorts so its text is stable.
	sort.Strings(hashes)
	coordinators := 0
	for _, h := range hashes {
		var entry struct{ Role string }
		if b := bytes.TrimSpace(c.raw.Policies[h]); len(b) > 0 && b[0] == '{' {
			_ = json.Unmarshal(b, &entry)
		}
		path := fmt.Sprintf("Policies[%q]", h)
		if _, err := hex.DecodeString(h); err != nil {
			lines = append(lines, fmt.Sprintf("%s: decoding policy hash %q: %v", path, h, err))
		} else if len(h) != 64 {
			lines = append(lines, fmt.Sprintf("%s: invalid policy hash length: %d (expected 64)", path, len(h)))
		}
		switch entry.Role {
		case "", RoleCoordinator:
		default:
			lines = append(lines, fmt.Sprintf("%s.Role: unknown role: %s", path, entry.Role))
		}
		if entry.Role == RoleCoordinator {
			coordinators++
		}
	}
	if c.newestCoordinatorRule() {
		if coordinators == 0 {
			return []string{"expected at least 1 policy with role 'coordinator'"}
		}
	} else if coordinators != 1 {
		return []string{fmt.Sprintf("expected exactly 1 policy with role 'coordinator', got %d", coordinators)}
	}
	lines = append(lines, c.checkReferenceValues()...)
	if c.newestCoordinatorRule() && c.mixesPlatforms() {
		lines = append(lines, "ReferenceValues: manifest must not mix secure and insecure platforms")
	}
	lines = append(lines, c.checkKeys()...)
	return lines
}

// newestCoordinatorRule: the release that accepts several Coordinator
// policies (CoordinatorPolicyHashes, ErrMissingCoordinator) also renamed
// WorkloadOwnerKeyDigests to WorkloadOwnerPubKeys and refuses manifests
// that mix secure and insecure platforms; earlier ones want exactly one.
func (c manifestChecker) newestCoordinatorRule() bool {
	return c.raw.WorkloadOwnerPubKeys != nil
}

func (c manifestChecker) mixesPlatforms() bool {
	var insecure, secure bool
	for _, list := range []json.RawMessage{c.raw.member("snp"), c.raw.member("tdx")} {
		for _, e := range entries(list) {
			var name string
			_ = json.Unmarshal(get(e, "Platform"), &name)
			if isInsecurePlatform(name) {
				insecure = true
			} else {
				// Unknown or unset platforms count as secure (fail closed).
				secure = true
			}
		}
	}
	return insecure && secure
}

func (c manifestChecker) checkReferenceValues() []string {
	var lines []string
	snp, tdx := entries(c.raw.member("snp")), entries(c.raw.member("tdx"))
	for i, e := range snp {
		lines = append(lines, c.entryLines(fmt.Sprintf("snp[%d]", i), c.snpEntry(e))...)
	}
	for i, e := range tdx {
		lines = append(lines, c.entryLines(fmt.Sprintf("tdx[%d]", i), c.tdxEntry(e))...)
	}
	if len(snp)+len(tdx) == 0 {
		lines = append(lines, "ReferenceValues: reference values in manifest cannot be empty. Is the chosen platform supported?")
	}
	return lines
}

// fieldErr is one failed field of a reference-value entry; expected marks
// the newest CLI's ExpectedMissingReferenceValueError (a value the user
// still has to fill in for their platform).
type fieldErr struct {
	path, msg string
	expected  bool
}

// entryLines formats an entry's field errors as the CLI does. The newest
// CLI folds an entry whose only errors are values still to be filled in
// into one line, "Please fill in all reference values for snp[0]".
func (c manifestChecker) entryLines(entry string, errs []fieldErr) []string {
	if len(errs) == 0 {
		return nil
	}
	if c.era == EraNewest {
		onlyExpected := true
		for _, e := range errs {
			onlyExpected = onlyExpected && e.expected
		}
		if onlyExpected {
			return []string{"ReferenceValues: Please fill in all reference values for " + entry}
		}
	}
	out := make([]string, len(errs))
	for i, e := range errs {
		msg := e.msg
		if e.expected {
			msg = "Please fill in all reference values for " + msg
		}
		out[i] = fmt.Sprintf("ReferenceValues.%s.%s: %s", entry, e.path, msg)
	}
	return out
}

// hexLenErr is the CLI's validateHexString: length first, then hex.
func hexLenErr(v json.RawMessage, n int) string {
	var s string
	_ = json.Unmarshal(v, &s)
	if len(s) != 2*n {
		return fmt.Sprintf("invalid length: %d (expected %d)", len(s), 2*n)
	}
	if _, err := hex.DecodeString(s); err != nil {
		return err.Error()
	}
	return ""
}

func isNull(v json.RawMessage) bool {
	b := bytes.TrimSpace(v)
	return len(b) == 0 || string(b) == "null"
}

func (c manifestChecker) snpEntry(e map[string]json.RawMessage) []fieldErr {
	var errs []fieldErr
	newest := c.era == EraNewest
	var tcb map[string]json.RawMessage
	_ = json.Unmarshal(get(e, "MinimumTCB"), &tcb)
	for _, f := range []string{"BootloaderVersion", "TEEVersion", "SNPVersion", "MicrocodeVersion"} {
		if isNull(get(tcb, f)) {
			errs = append(errs, fieldErr{path: "MinimumTCB." + f, msg: "field cannot be empty", expected: newest})
		}
	}
	var product string
	_ = json.Unmarshal(get(e, "ProductName"), &product)
	if product != "Milan" && product != "Genoa" {
		errs = append(errs, fieldErr{path: "ProductName", msg: "unknown product name: " + product})
	}
	if msg := hexLenErr(get(e, "TrustedMeasurement"), 48); msg != "" {
		errs = append(errs, fieldErr{path: "TrustedMeasurement", msg: msg})
	}
	if newest {
		errs = append(errs, guestPolicyErrs(get(e, "GuestPolicy"))...)
		var chips []string
		_ = json.Unmarshal(get(e, "AllowedChipIDs"), &chips)
		for i, id := range chips {
			if msg := hexLenErr(json.RawMessage(strconvQuote(id)), 64); msg != "" {
				errs = append(errs, fieldErr{path: fmt.Sprintf("AllowedChipIDs[%d]", i), msg: msg})
			}
		}
	}
	return errs
}

func strconvQuote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// guestPolicyErrs are the newest CLI's guest-policy flags that a manifest
// may not change from Contrast's values.
func guestPolicyErrs(v json.RawMessage) []fieldErr {
	var p struct {
		ABIMajor, ABIMinor                              uint64
		SMT, MigrateMA, Debug, SingleSocket, CXLAllowed bool
		MemAES256XTS, RAPLDis, CipherTextHidingDRAM     bool
	}
	if err := json.Unmarshal(v, &p); err != nil && !isNull(v) {
		return nil
	}
	const msg = "modifying this field is not permitted"
	var errs []fieldErr
	add := func(field string, bad bool) {
		if bad {
			errs = append(errs, fieldErr{path: "GuestPolicy." + field, msg: msg})
		}
	}
	add("ABIMajor", p.ABIMajor != 0)
	// ABIMinor is 0 on bare metal and 31 on AKS.
	add("ABIMinor", p.ABIMinor != 0 && p.ABIMinor != 31)
	add("SMT", !p.SMT)
	add("MigrateMA", p.MigrateMA)
	add("Debug", p.Debug)
	add("SingleSocket", p.SingleSocket)
	add("CXLAllowed", p.CXLAllowed)
	add("MemAES256XTS", p.MemAES256XTS)
	add("RAPLDis", p.RAPLDis)
	add("CipherTextHidingDRAM", p.CipherTextHidingDRAM)
	return errs
}

func (c manifestChecker) tdxEntry(e map[string]json.RawMessage) []fieldErr {
	var errs []fieldErr
	check := func(path, key string, n int, expected bool) {
		if msg := hexLenErr(get(e, key), n); msg != "" {
			errs = append(errs, fieldErr{path: path, msg: msg, expected: expected})
		}
	}
	if c.era == EraNewest {
		check("MrTd", "MrTd", 48, false)
		check("MrSeam", "MrSeam", 48, true)
		check("Xfam", "Xfam", 8, false)
		// The newest CLI numbers them from 1 in this message.
		return append(errs, rtmrErrs(get(e, "Rtmrs"), "RTMR[%d]", 1)...)
	}
	check("MrTd", "MrTd", 48, false)
	if isNull(get(e, "MinimumQeSvn")) {
		errs = append(errs, fieldErr{path: "MinimumQeSvn", msg: "field cannot be empty"})
	}
	if isNull(get(e, "MinimumPceSvn")) {
		errs = append(errs, fieldErr{path: "MinimumPceSvn", msg: "field cannot be empty"})
	}
	check("MinimumTeeTcbSvn", "MinimumTeeTcbSvn", 16, false)
	check("MrSeam", "MrSeam", 48, false)
	check("TdAttributes", "TdAttributes", 8, false)
	check("Xfam", "Xfam", 8, false)
	return append(errs, rtmrErrs(get(e, "Rtrms"), "Rtrms[%d]", 0)...)
}

// rtmrErrs checks the four 48-byte RTMRs of raw (a JSON list; missing
// entries are empty), naming each by format with its index from first.
func rtmrErrs(raw json.RawMessage, format string, first int) []fieldErr {
	rtmrs := make([]json.RawMessage, 4)
	var list []json.RawMessage
	_ = json.Unmarshal(raw, &list)
	copy(rtmrs, list)
	var errs []fieldErr
	for i, r := range rtmrs {
		if msg := hexLenErr(r, 48); msg != "" {
			errs = append(errs, fieldErr{path: fmt.Sprintf(format, i+first), msg: msg})
		}
	}
	return errs
}

func (c manifestChecker) checkKeys() []string {
	var lines []string
	if c.raw.WorkloadOwnerPubKeys != nil {
		for i, k := range *c.raw.WorkloadOwnerPubKeys {
			// Contrast's ParseWorkloadOwnerPublicKey is not in the indexed
			// source: hex, then a PKIX public key, worded like its seed
			// share twin.
			b, err := hex.DecodeString(k)
			if err != nil {
				lines = append(lines, fmt.Sprintf("WorkloadOwnerPubKeys[%d]: parsing from hex: %v", i, err))
			} else if _, err := x509.ParsePKIXPublicKey(b); err != nil {
				lines = append(lines, fmt.Sprintf("WorkloadOwnerPubKeys[%d]: parsing from PKIX: %v", i, err))
			}
		}
	} else {
		for i, k := range c.raw.WorkloadOwnerKeyDigests {
			if _, err := hex.DecodeString(k); err != nil {
				lines = append(lines, fmt.Sprintf("WorkloadOwnerKeyDigests[%d]: %v", i, err))
			} else if len(k) != 64 {
				lines = append(lines, fmt.Sprintf("WorkloadOwnerKeyDigests[%d]: invalid length: %d (expected 64)", i, len(k)))
			}
		}
	}
	for i, k := range c.raw.SeedshareOwnerPubKeys {
		if err := parseSeedShareOwnerKey(k); err != nil {
			lines = append(lines, fmt.Sprintf("SeedshareOwnerPubKeys[%d]: %v", i, err))
		}
	}
	return lines
}

// parseSeedShareOwnerKey is Contrast's ParseSeedShareOwnerKey: hex, then a
// PKCS #1 RSA public key.
func parseSeedShareOwnerKey(k string) error {
	b, err := hex.DecodeString(k)
	if err != nil {
		return fmt.Errorf("parsing from hex: %w", err)
	}
	if _, err := x509.ParsePKCS1PublicKey(b); err != nil {
		return fmt.Errorf("parsing from PKCS1: %w", err)
	}
	return nil
}

// checkOldest is the first release's Validate: it stops at the first
// failure, and its reference values are one SNP object.
func (c manifestChecker) checkOldest() []string {
	hashes := make([]string, 0, len(c.raw.Policies))
	for h := range c.raw.Policies {
		hashes = append(hashes, h)
	}
	sort.Strings(hashes)
	for _, h := range hashes {
		if _, err := hex.DecodeString(h); err != nil {
			return []string{fmt.Sprintf("decoding policy hash %s: %v", h, err)}
		}
		if len(h) != 64 {
			return []string{fmt.Sprintf("policy hash %s has invalid length: %d (expected 64)", h, len(h))}
		}
	}
	var snp map[string]json.RawMessage
	_ = json.Unmarshal(c.raw.member("snp"), &snp)
	var tcb map[string]json.RawMessage
	_ = json.Unmarshal(get(snp, "MinimumTCB"), &tcb)
	for _, f := range []string{"BootloaderVersion", "TEEVersion", "SNPVersion", "MicrocodeVersion"} {
		if isNull(get(tcb, f)) {
			return []string{fmt.Sprintf("validating reference values: field %s in manifest cannot be empty", f)}
		}
	}
	var tm string
	_ = json.Unmarshal(c.raw.member("TrustedMeasurement"), &tm)
	if len(tm) != 96 {
		return []string{fmt.Sprintf("validating reference values: trusted measurement has invalid length: %d (expected 96)", len(tm))}
	}
	for i, k := range c.raw.WorkloadOwnerKeyDigests {
		if _, err := hex.DecodeString(k); err != nil {
			return []string{fmt.Sprintf("decoding key digest %s: %v", k, err)}
		}
		if len(k) != 64 {
			return []string{fmt.Sprintf("workload owner key digest %s has invalid length: %d (expected 64)", c.raw.WorkloadOwnerKeyDigests[i], len(k))}
		}
	}
	for _, k := range c.raw.SeedshareOwnerPubKeys {
		if err := parseSeedShareOwnerKey(k); err != nil {
			return []string{fmt.Sprintf("invalid seed share owner public key %s: %v", k, err)}
		}
	}
	return nil
}

// AsManifestError returns the *ManifestError in err's chain, or nil.
func AsManifestError(err error) *ManifestError {
	var me *ManifestError
	if errors.As(err, &me) {
		return me
	}
	return nil
}
