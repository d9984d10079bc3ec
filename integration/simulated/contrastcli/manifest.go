package contrastcli

import (
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"sort"

	"github.com/ccproxy-dev/ccproxy/attest/idblock"
	"github.com/ccproxy-dev/ccproxy/attest/snpmeasure"
	"github.com/google/go-sev-guest/abi"
	"github.com/google/go-sev-guest/kds"
	snpvalidate "github.com/google/go-sev-guest/validate"
	snpverify "github.com/google/go-sev-guest/verify"
	"github.com/google/go-sev-guest/verify/trust"
	tdxvalidate "github.com/google/go-tdx-guest/validate"
	tdxverify "github.com/google/go-tdx-guest/verify"
)

// manifest is the part of Contrast's manifest.json the CLI needs to build its
// validators (internal/manifest). encoding/json matches keys without regard to
// case, so "snp"/"SNP" both work.
type manifest struct {
	Policies        map[string]policyEntry
	ReferenceValues referenceValues
	// WorkloadOwnerPubKeys is written (possibly empty) by the newest CLI
	// only, whose CoordinatorValidator checks the policy hash after
	// validation against every Coordinator policy.
	WorkloadOwnerPubKeys *[]string
}

// newest reports whether the manifest is of the newest CLI.
func (m *manifest) newest() bool { return m.WorkloadOwnerPubKeys != nil }

// validate is the part of Manifest.Validate the simulated CLI models: the
// Coordinator policy count its era requires (at least one in the newest,
// exactly one before) and, in the newest, the guest-policy flags a manifest
// may not change.
func (m *manifest) validate() error {
	n := len(m.coordinatorPolicies())
	switch {
	case m.newest() && n == 0:
		return errors.New("expected at least 1 policy with role 'coordinator'")
	case !m.newest() && n != 1:
		return fmt.Errorf("expected exactly 1 policy with role 'coordinator', got %d", n)
	}
	if !m.newest() {
		return nil
	}
	var errs []error
	for i, ref := range m.ReferenceValues.SNP {
		p := ref.GuestPolicy
		for _, f := range []struct {
			name string
			bad  bool
		}{
			{"SMT", !p.SMT}, {"MigrateMA", p.MigrateMA}, {"Debug", p.Debug},
			{"SingleSocket", p.SingleSocket}, {"CXLAllowed", p.CXLAllowed},
		} {
			if f.bad {
				errs = append(errs, fmt.Errorf("ReferenceValues.snp[%d].GuestPolicy.%s: modifying this field is not permitted", i, f.name))
			}
		}
	}
	return errors.Join(errs...)
}

func (m *manifest) coordinatorPolicies() []string {
	var found []string
	for h, p := range m.Policies {
		if p.Role == roleCoordinator {
			found = append(found, h)
		}
	}
	sort.Strings(found)
	return found
}

// coordinatorPolicyHashes are all Coordinator policy hashes
// (Manifest.CoordinatorPolicyHashes); ones that are no hash are skipped.
func (m *manifest) coordinatorPolicyHashes() [][]byte {
	var out [][]byte
	for _, h := range m.coordinatorPolicies() {
		if b, err := hex.DecodeString(h); err == nil && len(b) == 32 {
			out = append(out, b)
		}
	}
	return out
}

type policyEntry struct {
	SANs             []string
	WorkloadSecretID string
	Role             string
}

type referenceValues struct {
	SNP []snpReferenceValues `json:"snp"`
	TDX []tdxReferenceValues `json:"tdx"`
}

type snpReferenceValues struct {
	ProductName        string
	TrustedMeasurement string
	MinimumTCB         struct {
		BootloaderVersion *uint8
		TEEVersion        *uint8
		SNPVersion        *uint8
		MicrocodeVersion  *uint8
	}
	GuestPolicy abi.SnpPolicy
	// PlatformInfo is absent in older manifests, which did not check it.
	PlatformInfo            *abi.SnpPlatformInfo
	MinimumMitigationVector uint64
	AllowedChipIDs          []string
	// APEIP (newest): TrustedMeasurement is the 1-vCPU seed.
	APEIP string
}

type tdxReferenceValues struct {
	MrTd   string
	MrSeam string
	Rtmrs  [4]string
	// Rtrms is the older, misspelled key for Rtmrs.
	Rtrms        [4]string
	Xfam         string
	TdAttributes string
	AllowedPIIDs []string
	// Older versions' minimum SVNs.
	MinimumQeSvn     *uint16
	MinimumPceSvn    *uint16
	MinimumTeeTcbSvn string
}

// roleCoordinator marks the Coordinator's policy in manifest.Policies.
const roleCoordinator = "coordinator"

// intelQeVendorID is the QE vendor ID Contrast requires (Intel's).
func intelQeVendorID() []byte {
	return []byte{0x93, 0x9a, 0x72, 0x33, 0xf7, 0x9c, 0x4c, 0xa9, 0x94, 0x0a, 0x0d, 0xb3, 0x95, 0x7f, 0x06, 0x07}
}

func parseManifest(data []byte) (*manifest, error) {
	var m manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("unmarshalling manifest: %w", err)
	}
	if len(m.ReferenceValues.SNP)+len(m.ReferenceValues.TDX) == 0 {
		return nil, errors.New("validating manifest: reference values in manifest cannot be empty. Is the chosen platform supported?")
	}
	return &m, nil
}

// coordinatorPolicyHash is the manifest's one Coordinator policy hash
// (Manifest.CoordinatorPolicyHash).
func (m *manifest) coordinatorPolicyHash() ([]byte, error) {
	var found []string
	for h, p := range m.Policies {
		if p.Role == roleCoordinator {
			found = append(found, h)
		}
	}
	if len(found) != 1 {
		return nil, fmt.Errorf("expected exactly 1 policy with role 'coordinator', got %d", len(found))
	}
	b, err := hex.DecodeString(found[0])
	if err != nil || len(b) != 32 {
		return nil, fmt.Errorf("invalid coordinator policy hash %q", found[0])
	}
	return b, nil
}

// snpOptions builds go-sev-guest's options from one SNP reference value as
// Manifest.SNPValidateOpts does, including the required ID block: without
// APEIP the trusted ID key is derived from TrustedMeasurement now; with it,
// the validator derives it per vCPU count (seed is then non-nil).
func snpOptions(ref snpReferenceValues, rootsPEM []byte, online bool) (*snpverify.Options, *snpvalidate.Options, [][]byte, *seedOptions, error) {
	verifyOpts, validateOpts, chipIDs, err := snpBaseOptions(ref, rootsPEM, online)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	validateOpts.RequireIDBlock = true
	if ref.APEIP != "" {
		eip, err := decodeHex("APEIP", ref.APEIP, 4)
		if err != nil {
			return nil, nil, nil, nil, fmt.Errorf("failed to decode APEIP: %w", err)
		}
		sig, err := snpmeasure.ProductSignature(ref.ProductName)
		if err != nil {
			return nil, nil, nil, nil, fmt.Errorf("looking up CPU signature for product %q: %w", ref.ProductName, err)
		}
		return verifyOpts, validateOpts, chipIDs, &seedOptions{
			seed: [48]byte(validateOpts.Measurement), apEIP: binary.BigEndian.Uint32(eip), sig: sig,
		}, nil
	}
	digest, err := idblock.IDKeyDigest([48]byte(validateOpts.Measurement), ref.GuestPolicy)
	if err != nil {
		return nil, nil, nil, nil, fmt.Errorf("failed to generate ID blocks: %w", err)
	}
	validateOpts.TrustedIDKeyHashes = [][]byte{digest[:]}
	return verifyOpts, validateOpts, chipIDs, nil, nil
}

// seedOptions make a validator iterative: the CLI's IterativeValidator.
type seedOptions struct {
	seed  [48]byte
	apEIP uint32
	sig   uint32
}

func snpBaseOptions(ref snpReferenceValues, rootsPEM []byte, online bool) (*snpverify.Options, *snpvalidate.Options, [][]byte, error) {
	measurement, err := decodeHex("TrustedMeasurement", ref.TrustedMeasurement, abi.MeasurementSize)
	if err != nil {
		return nil, nil, nil, err
	}
	tcbFields := []*uint8{ref.MinimumTCB.BootloaderVersion, ref.MinimumTCB.TEEVersion, ref.MinimumTCB.SNPVersion, ref.MinimumTCB.MicrocodeVersion}
	for _, f := range tcbFields {
		if f == nil {
			return nil, nil, nil, errors.New("SNP reference values: MinimumTCB: field cannot be empty")
		}
	}
	verifyOpts := snpverify.DefaultOptions()
	verifyOpts.Product, err = kds.ParseProductLine(ref.ProductName)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("SNP reference values: %w", err)
	}
	if rootsPEM != nil {
		if verifyOpts.TrustedRoots, err = snpTrustedRoots(rootsPEM, ref.ProductName); err != nil {
			return nil, nil, nil, fmt.Errorf("determine trusted roots: %w", err)
		}
	}
	// Offline: never reach AMD's KDS. Online: what the CLI does.
	verifyOpts.DisableCertFetching = !online
	verifyOpts.CheckRevocations = online

	tcb := kds.TCBParts{
		BlSpl:    *ref.MinimumTCB.BootloaderVersion,
		TeeSpl:   *ref.MinimumTCB.TEEVersion,
		SnpSpl:   *ref.MinimumTCB.SNPVersion,
		UcodeSpl: *ref.MinimumTCB.MicrocodeVersion,
	}
	validateOpts := &snpvalidate.Options{
		Measurement:                    measurement,
		PlatformInfo:                   ref.PlatformInfo,
		GuestPolicy:                    ref.GuestPolicy,
		VMPL:                           new(int), // VMPL0
		MinimumTCB:                     tcb,
		MinimumLaunchTCB:               tcb,
		PermitProvisionalFirmware:      true,
		MinimumCurrentMitigationVector: ref.MinimumMitigationVector,
		MinimumLaunchMitigationVector:  ref.MinimumMitigationVector,
	}
	var chipIDs [][]byte
	for _, s := range ref.AllowedChipIDs {
		b, err := hex.DecodeString(s)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("failed to convert AllowedChipID from manifest to byte slices: %w", err)
		}
		chipIDs = append(chipIDs, b)
	}
	return verifyOpts, validateOpts, chipIDs, nil
}

// snpTrustedRoots reads ARK (self-signed) and ASK certificates from PEM and
// trusts them for productLine, replacing AMD's embedded roots.
func snpTrustedRoots(rootsPEM []byte, productLine string) (map[string][]*trust.AMDRootCerts, error) {
	certs, err := parsePEMCerts(rootsPEM)
	if err != nil {
		return nil, err
	}
	pc := &trust.ProductCerts{}
	for _, c := range certs {
		if c.CheckSignatureFrom(c) == nil {
			pc.Ark = c
		} else if pc.Ask == nil {
			pc.Ask = c
		}
	}
	if pc.Ark == nil || pc.Ask == nil {
		return nil, errors.New("SNP trusted roots need an ARK and an ASK certificate")
	}
	return map[string][]*trust.AMDRootCerts{
		productLine: {{ProductLine: productLine, ProductCerts: pc}},
	}, nil
}

// tdxOptions builds go-tdx-guest's options from one TDX reference value as
// Manifest.TDXValidateOpts does. It returns a constructor for the verify
// options because go-tdx-guest fills fields into them during a call.
func tdxOptions(ref tdxReferenceValues, rootsPEM []byte, online bool) (func() (*tdxverify.Options, error), *tdxvalidate.Options, [][]byte, error) {
	mrTd, err := decodeHex("MrTd", ref.MrTd, 48)
	if err != nil {
		return nil, nil, nil, err
	}
	mrSeam, err := decodeHex("MrSeam", ref.MrSeam, 48)
	if err != nil {
		return nil, nil, nil, err
	}
	xfam, err := decodeHex("Xfam", ref.Xfam, 8)
	if err != nil {
		return nil, nil, nil, err
	}
	rtmrHex := ref.Rtmrs
	if rtmrHex == [4]string{} {
		rtmrHex = ref.Rtrms
	}
	rtmrs := make([][]byte, 4)
	for i, s := range rtmrHex {
		if rtmrs[i], err = decodeHex(fmt.Sprintf("Rtmrs[%d]", i), s, 48); err != nil {
			return nil, nil, nil, err
		}
	}
	// Kata/QEMU set only SEPT_VE_DISABLE (bit 28); older manifests spelled it out.
	tdAttributes := binary.LittleEndian.AppendUint64(nil, 1<<28)
	if ref.TdAttributes != "" {
		if tdAttributes, err = decodeHex("TdAttributes", ref.TdAttributes, 8); err != nil {
			return nil, nil, nil, err
		}
	}
	validateOpts := &tdxvalidate.Options{
		HeaderOptions: tdxvalidate.HeaderOptions{QeVendorID: intelQeVendorID()},
		TdQuoteBodyOptions: tdxvalidate.TdQuoteBodyOptions{
			MrSeam:       mrSeam,
			TdAttributes: tdAttributes,
			Xfam:         xfam,
			MrTd:         mrTd,
			Rtmrs:        rtmrs,
		},
	}
	if ref.MinimumQeSvn != nil {
		validateOpts.HeaderOptions.MinimumQeSvn = *ref.MinimumQeSvn
	}
	if ref.MinimumPceSvn != nil {
		validateOpts.HeaderOptions.MinimumPceSvn = *ref.MinimumPceSvn
	}
	if ref.MinimumTeeTcbSvn != "" {
		if validateOpts.TdQuoteBodyOptions.MinimumTeeTcbSvn, err = decodeHex("MinimumTeeTcbSvn", ref.MinimumTeeTcbSvn, 16); err != nil {
			return nil, nil, nil, err
		}
	}
	var piids [][]byte
	for _, s := range ref.AllowedPIIDs {
		b, err := hex.DecodeString(s)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("failed to convert AllowedPIID from manifest to byte slices: %w", err)
		}
		piids = append(piids, b)
	}
	var pool *x509.CertPool
	if rootsPEM != nil {
		certs, err := parsePEMCerts(rootsPEM)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("getting trusted roots: %w", err)
		}
		pool = x509.NewCertPool()
		for _, c := range certs {
			pool.AddCert(c)
		}
	}
	verifyOpts := func() (*tdxverify.Options, error) {
		o := tdxverify.DefaultOptions()
		o.TrustedRoots = pool
		o.CheckRevocations = online
		o.GetCollateral = online
		return o, nil
	}
	return verifyOpts, validateOpts, piids, nil
}

func decodeHex(field, s string, size int) ([]byte, error) {
	b, err := hex.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("failed to convert %s from manifest to byte slices: %w", field, err)
	}
	if len(b) != size {
		return nil, fmt.Errorf("%s: invalid length: %d (expected %d)", field, len(s), 2*size)
	}
	return b, nil
}

func parsePEMCerts(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parsing trusted root: %w", err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, errors.New("no PEM certificate found in trusted roots")
	}
	return certs, nil
}
