package attesttest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha512"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"fmt"
	"math/big"
	"sync"

	"github.com/ccproxy-dev/ccproxy/attest/idblock"
	"github.com/google/go-sev-guest/abi"
	"github.com/google/go-sev-guest/kds"
	spb "github.com/google/go-sev-guest/proto/sevsnp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// The fake chip: a Milan-B1, like go-sev-guest's own fake hierarchy.
const (
	snpProductLine = "Milan"
	snpProductName = "Milan-B1"
	snpStepping    = 1
)

// TCB values. The default evidence is above the default reference minimum;
// TCBLow evidence has an SNP firmware SVN one below it.
var (
	snpMinimumTCB = kds.TCBParts{BlSpl: 3, TeeSpl: 0, SnpSpl: 8, UcodeSpl: 115}
	snpDefaultTCB = kds.TCBParts{BlSpl: 4, TeeSpl: 0, SnpSpl: 22, UcodeSpl: 213}
	snpLowTCB     = kds.TCBParts{BlSpl: 4, TeeSpl: 0, SnpSpl: 7, UcodeSpl: 213}
)

const (
	// snpGuestPolicy: reserved bit 17 (must be 1) and SMT allowed (bit 16),
	// ABI 0.0 — what Contrast's bare-metal reference values allow.
	snpGuestPolicy = 0x30000
	// snpPlatformInfo: SMT enabled on the host.
	snpPlatformInfo = 0x1
)

type snpAuthority struct {
	ark, ask, vcek *x509.Certificate
	vcekKey        *ecdsa.PrivateKey
	askKey         *rsa.PrivateKey
	chipID         [64]byte

	// The VCEKs for TCBLow and OtherChip evidence are issued on first use:
	// an RSA-4096 signature is a good part of NewAuthority's cost.
	lowOnce sync.Once
	vcekLow *x509.Certificate
	lowErr  error

	otherOnce   sync.Once
	vcekOther   *x509.Certificate
	otherErr    error
	otherChipID [64]byte

	// crl is the ARK-signed CRL a Contrast issuer attaches to the chain's
	// extras; it revokes nothing and is fresh until validUntil.
	crl []byte
}

func amdName(commonName, serial string) pkix.Name {
	return pkix.Name{
		Organization:       []string{"Advanced Micro Devices"},
		Country:            []string{"US"},
		OrganizationalUnit: []string{"Engineering"},
		Locality:           []string{"Santa Clara"},
		Province:           []string{"CA"},
		SerialNumber:       serial,
		CommonName:         commonName,
	}
}

func newSNPAuthority() (*snpAuthority, error) {
	keys, err := loadSNPKeys()
	if err != nil {
		return nil, err
	}
	a := &snpAuthority{vcekKey: keys.vcek, askKey: keys.ask}
	a.chipID = sha512.Sum512([]byte("ccproxy attesttest chip"))
	arkKey, askKey := keys.ark, keys.ask
	crl := kds.CrlLinkByKey(snpProductLine, abi.VcekReportSigner)

	// The ARK's own name is free (verification matches it only as the ASK's
	// issuer), so it says what it is; the ASK's name is checked as the
	// VCEK's issuer and must read like AMD's.
	arkTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(0xc0dec0de),
		Subject: pkix.Name{
			Organization: []string{"ccproxy attesttest (not AMD)"},
			CommonName:   "ARK-" + snpProductLine,
		},
		NotBefore:             validFrom,
		NotAfter:              validUntil,
		SignatureAlgorithm:    x509.SHA384WithRSAPSS,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		IsCA:                  true,
		BasicConstraintsValid: true,
		CRLDistributionPoints: []string{crl},
	}
	ark, err := issue(arkTmpl, arkTmpl, arkKey.Public(), arkKey)
	if err != nil {
		return nil, fmt.Errorf("ARK: %w", err)
	}
	askTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(0xc0dec0df),
		Subject:               amdName("SEV-"+snpProductLine, "c0dec0df"),
		NotBefore:             validFrom,
		NotAfter:              validUntil,
		SignatureAlgorithm:    x509.SHA384WithRSAPSS,
		KeyUsage:              x509.KeyUsageCertSign,
		IsCA:                  true,
		BasicConstraintsValid: true,
		CRLDistributionPoints: []string{crl},
	}
	ask, err := issue(askTmpl, ark, askKey.Public(), arkKey)
	if err != nil {
		return nil, fmt.Errorf("ASK: %w", err)
	}
	vcek, err := a.issueVCEK(ask, askKey, snpDefaultTCB, 1)
	if err != nil {
		return nil, err
	}
	a.ark, a.ask, a.vcek = ark, ask, vcek
	a.otherChipID = sha512.Sum512([]byte("ccproxy attesttest other chip"))
	a.crl, err = x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number:             big.NewInt(1),
		ThisUpdate:         validFrom,
		NextUpdate:         validUntil,
		SignatureAlgorithm: x509.SHA384WithRSAPSS,
	}, ark, arkKey)
	if err != nil {
		return nil, fmt.Errorf("CRL: %w", err)
	}
	return a, nil
}

// issueVCEK certifies the VCEK key for one TCB: AMD issues one VCEK per chip
// and TCB, and go-sev-guest's validation requires the report's TCB to equal
// the certificate's.
func (a *snpAuthority) issueVCEK(ask *x509.Certificate, askKey *rsa.PrivateKey, tcb kds.TCBParts, serial int64) (*x509.Certificate, error) {
	return a.issueChipVCEK(ask, askKey, tcb, a.chipID[:], serial)
}

func (a *snpAuthority) issueChipVCEK(ask *x509.Certificate, askKey *rsa.PrivateKey, tcb kds.TCBParts, chipID []byte, serial int64) (*x509.Certificate, error) {
	exts, err := vcekExtensions(tcb, chipID, snpProductName)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:       big.NewInt(serial),
		Subject:            amdName("SEV-VCEK", fmt.Sprint(serial)),
		NotBefore:          validFrom,
		NotAfter:           validUntil,
		SignatureAlgorithm: x509.SHA384WithRSAPSS,
		ExtraExtensions:    exts,
	}
	c, err := issue(tmpl, ask, a.vcekKey.Public(), askKey)
	if err != nil {
		return nil, fmt.Errorf("VCEK: %w", err)
	}
	return c, nil
}

// vcekExtensions encodes the KDS extensions of a VCEK (AMD KDS
// specification, table 8): struct version, product name, TCB SPLs, HWID.
func vcekExtensions(tcb kds.TCBParts, hwid []byte, productName string) ([]pkix.Extension, error) {
	integer := func(v uint8) []byte {
		b, _ := asn1.Marshal(int(v))
		return b
	}
	name, err := asn1.MarshalWithParams(productName, "ia5")
	if err != nil {
		return nil, fmt.Errorf("encoding product name: %w", err)
	}
	id, err := asn1.Marshal(hwid)
	if err != nil {
		return nil, fmt.Errorf("encoding HWID: %w", err)
	}
	return []pkix.Extension{
		{Id: kds.OidStructVersion, Value: integer(0)},
		{Id: kds.OidProductName1, Value: name},
		{Id: kds.OidBlSpl, Value: integer(tcb.BlSpl)},
		{Id: kds.OidTeeSpl, Value: integer(tcb.TeeSpl)},
		{Id: kds.OidSnpSpl, Value: integer(tcb.SnpSpl)},
		{Id: kds.OidSpl4, Value: integer(tcb.Spl4)},
		{Id: kds.OidSpl5, Value: integer(tcb.Spl5)},
		{Id: kds.OidSpl6, Value: integer(tcb.Spl6)},
		{Id: kds.OidSpl7, Value: integer(tcb.Spl7)},
		{Id: kds.OidUcodeSpl, Value: integer(tcb.UcodeSpl)},
		{Id: kds.OidHwid, Value: id},
	}, nil
}

func issue(tmpl, parent *x509.Certificate, pub crypto.PublicKey, priv crypto.Signer) (*x509.Certificate, error) {
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, priv)
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}

func pemCert(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

func (a *snpAuthority) rootsPEM() []byte {
	return append(pemCert(a.ask), pemCert(a.ark)...)
}

// signedReport builds, signs and returns the raw report and the VCEK that
// certifies its TCB.
func (a *snpAuthority) signedReport(e Evidence) ([]byte, *x509.Certificate, error) {
	tcb, vcek := snpDefaultTCB, a.vcek
	if e.TCBLow {
		a.lowOnce.Do(func() {
			a.vcekLow, a.lowErr = a.issueVCEK(a.ask, a.askKey, snpLowTCB, 2)
		})
		if a.lowErr != nil {
			return nil, nil, a.lowErr
		}
		tcb, vcek = snpLowTCB, a.vcekLow
	}
	chipID := a.chipID
	if e.OtherChip {
		a.otherOnce.Do(func() {
			a.vcekOther, a.otherErr = a.issueChipVCEK(a.ask, a.askKey, tcb, a.otherChipID[:], 3)
		})
		if a.otherErr != nil {
			return nil, nil, a.otherErr
		}
		vcek, chipID = a.vcekOther, a.otherChipID
	}
	tcbValue, err := kds.ComposeTCBParts(tcb)
	if err != nil {
		return nil, nil, err
	}
	measurement, err := e.snpMeasurement()
	if err != nil {
		return nil, nil, err
	}
	hostData := e.policyHash()
	idKeyDigest, err := e.idKeyDigest(measurement)
	if err != nil {
		return nil, nil, err
	}
	reportID := sha512.Sum512_256([]byte("ccproxy attesttest report id"))
	reportIDMA := make([]byte, abi.ReportIDMASize)
	for i := range reportIDMA {
		reportIDMA[i] = 0xff // no migration agent
	}
	report := &spb.Report{
		Version:       abi.ReportVersion3,
		Policy:        snpGuestPolicy,
		FamilyId:      make([]byte, abi.FamilyIDSize),
		ImageId:       make([]byte, abi.ImageIDSize),
		Vmpl:          0,
		SignatureAlgo: abi.SignEcdsaP384Sha384,
		CurrentTcb:    uint64(tcbValue),
		PlatformInfo:  snpPlatformInfo,
		SignerInfo:    0, // signed by the VCEK, no author key
		ReportData:    e.ReportData[:],
		Measurement:   measurement[:],
		HostData:      hostData[:],
		IdKeyDigest:   idKeyDigest[:],
		AuthorKeyDigest: make([]byte,
			abi.AuthorKeyDigestSize),
		ReportId:    reportID[:],
		ReportIdMa:  reportIDMA,
		ReportedTcb: uint64(tcbValue),
		Cpuid1EaxFms: abi.MaskedCpuid1EaxFromSevProduct(&spb.SevProduct{
			Name:            spb.SevProduct_SEV_PRODUCT_MILAN,
			MachineStepping: wrapperspb.UInt32(snpStepping),
		}),
		ChipId:         chipID[:],
		CommittedTcb:   uint64(tcbValue),
		CurrentBuild:   21,
		CurrentMinor:   55,
		CurrentMajor:   1,
		CommittedBuild: 21,
		CommittedMinor: 55,
		CommittedMajor: 1,
		LaunchTcb:      uint64(tcbValue),
		Signature:      make([]byte, abi.SignatureSize),
	}
	raw, err := abi.ReportToAbiBytes(report)
	if err != nil {
		return nil, nil, fmt.Errorf("encoding report: %w", err)
	}
	digest := sha512.Sum384(abi.SignedComponent(raw))
	r, s, err := ecdsa.Sign(rand.Reader, a.vcekKey, digest[:])
	if err != nil {
		return nil, nil, fmt.Errorf("signing report: %w", err)
	}
	if err := abi.SetSignature(r, s, raw); err != nil {
		return nil, nil, fmt.Errorf("setting report signature: %w", err)
	}
	if e.BadSignature {
		// The signature starts at 0x2A0 (R, little endian): flip its low
		// byte so it stays a well-formed number that does not verify.
		raw[0x2A0] ^= 0x01
	}
	return raw, vcek, nil
}

// snpCRLKey is where Contrast's issuer puts the CRL in the chain's extras
// (constants.SNPCertChainExtrasCRLKey).
const snpCRLKey = "00569ee4-e480-4fba-bbf4-45b629901180"

// snpIDPolicy is snpGuestPolicy as the ID block carries it.
var snpIDPolicy = abi.SnpPolicy{SMT: true}

// idKeyDigest is the ID_KEY_DIGEST of a VM Contrast launched with this
// measurement: the ID key derived from it and the guest policy; another
// key's for UntrustedIDKey, zero for NoIDBlock.
func (e Evidence) idKeyDigest(measurement [48]byte) ([48]byte, error) {
	switch {
	case e.NoIDBlock:
		return [48]byte{}, nil
	case e.UntrustedIDKey:
		// An ID block over the same measurement, signed by a key of its own.
		return sha512.Sum384([]byte("ccproxy attesttest foreign ID key")), nil
	}
	return idblock.IDKeyDigest(measurement, snpIDPolicy)
}

func (a *snpAuthority) rawReport(e Evidence) ([]byte, error) {
	raw, _, err := a.signedReport(e)
	return raw, err
}

func (a *snpAuthority) attestation(e Evidence) ([]byte, error) {
	raw, vcek, err := a.signedReport(e)
	if err != nil {
		return nil, err
	}
	report, err := abi.ReportToProto(raw)
	if err != nil {
		return nil, fmt.Errorf("decoding own report: %w", err)
	}
	att := &spb.Attestation{
		Report: report,
		CertificateChain: &spb.CertificateChain{
			VcekCert: vcek.Raw,
			AskCert:  a.ask.Raw,
			ArkCert:  a.ark.Raw,
			Extras:   map[string][]byte{snpCRLKey: a.crl},
		},
		Product: &spb.SevProduct{
			Name:            spb.SevProduct_SEV_PRODUCT_MILAN,
			MachineStepping: wrapperspb.UInt32(snpStepping),
		},
	}
	return proto.Marshal(att)
}
