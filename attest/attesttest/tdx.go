package attesttest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/binary"
	"fmt"
	"math/big"

	"github.com/google/go-tdx-guest/abi"
	tpb "github.com/google/go-tdx-guest/proto/tdx"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
	"google.golang.org/protobuf/proto"
)

// Values the default TDX evidence carries. TEE_TCB_SVN is compared
// component-wise against the older manifests' MinimumTeeTcbSvn.
var (
	tdxMinimumTeeTcbSvn = [16]byte{0x03, 0x01, 0x02}
	tdxDefaultTeeTcbSvn = [16]byte{0x04, 0x01, 0x03}
	tdxLowTeeTcbSvn     = [16]byte{0x02, 0x01, 0x03}
)

const (
	tdxQeSvn  = 8
	tdxPceSvn = 13
	// tdxXfam is x87, SSE, AVX, AVX-512 and PKRU: allowed by go-tdx-guest's
	// fixed-bit rules (0x61ae7, little endian).
	tdxXfam = 0x61ae7
	// tdxTdAttributes is SEPT_VE_DISABLE only (bit 28), what Kata/QEMU set
	// and Contrast's newest reference values require.
	tdxTdAttributes = 1 << 28
)

// intelQEVendorID is the QE_VENDOR_ID of Intel's quoting enclave; Contrast
// requires it.
var intelQEVendorID = []byte{0x93, 0x9a, 0x72, 0x33, 0xf7, 0x9c, 0x4c, 0xa9, 0x94, 0x0a, 0x0d, 0xb3, 0x95, 0x7f, 0x06, 0x07}

// OIDs of the SGX extension in a PCK certificate (Intel SGX PCK Certificate
// and CRL Profile, section 1.5).
var (
	oidSGX          = asn1.ObjectIdentifier{1, 2, 840, 113741, 1, 13, 1}
	oidSGXPPID      = asn1.ObjectIdentifier{1, 2, 840, 113741, 1, 13, 1, 1}
	oidSGXTCB       = asn1.ObjectIdentifier{1, 2, 840, 113741, 1, 13, 1, 2}
	oidSGXPCEID     = asn1.ObjectIdentifier{1, 2, 840, 113741, 1, 13, 1, 3}
	oidSGXFMSPC     = asn1.ObjectIdentifier{1, 2, 840, 113741, 1, 13, 1, 4}
	oidSGXType      = asn1.ObjectIdentifier{1, 2, 840, 113741, 1, 13, 1, 5}
	oidSGXPIID      = asn1.ObjectIdentifier{1, 2, 840, 113741, 1, 13, 1, 6}
	oidSGXConfig    = asn1.ObjectIdentifier{1, 2, 840, 113741, 1, 13, 1, 7}
	tdxFMSPC        = []byte{0x50, 0x80, 0x6f, 0x00, 0x00, 0x00}
	tdxCPUSVN       = []byte{3, 3, 2, 2, 2, 1, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0}
	tdxPCKPCESVN    = 11
	tdxSGXScalable  = 1 // SGX Type "Scalable"
	tdxDynamicPlat  = true
	tdxCachedKeys   = false
	tdxSMTEnabled   = true
	tdxQeAuthLength = 32
)

type tdxAuthority struct {
	root, inter, pck *x509.Certificate
	pckKey, attKey   *ecdsa.PrivateKey
	chainPEM         []byte
	piid             [16]byte
}

func intelName(commonName string) pkix.Name {
	return pkix.Name{
		CommonName:   commonName,
		Organization: []string{"ccproxy attesttest (not Intel)"},
		Locality:     []string{"Santa Clara"},
		Province:     []string{"CA"},
		Country:      []string{"US"},
	}
}

func newTDXAuthority() (*tdxAuthority, error) {
	a := &tdxAuthority{}
	piid := sha256.Sum256([]byte("ccproxy attesttest PIID"))
	copy(a.piid[:], piid[:16])
	rootKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	interKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	if a.pckKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		return nil, err
	}
	if a.attKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		return nil, err
	}

	rootTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               intelName("Intel SGX Root CA"),
		NotBefore:             validFrom,
		NotAfter:              validUntil,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		IsCA:                  true,
		BasicConstraintsValid: true,
	}
	if a.root, err = issue(rootTmpl, rootTmpl, rootKey.Public(), rootKey); err != nil {
		return nil, fmt.Errorf("SGX root: %w", err)
	}
	interTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(2),
		Subject:               intelName("Intel SGX PCK Platform CA"),
		NotBefore:             validFrom,
		NotAfter:              validUntil,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
	}
	if a.inter, err = issue(interTmpl, a.root, interKey.Public(), rootKey); err != nil {
		return nil, fmt.Errorf("PCK platform CA: %w", err)
	}
	sgx, err := a.sgxExtension()
	if err != nil {
		return nil, err
	}
	// go-tdx-guest wants exactly six extensions, like Intel's: authority and
	// subject key IDs, CRL distribution point, key usage, basic constraints
	// and the SGX extension.
	skid := sha256.Sum256(elliptic.MarshalCompressed(elliptic.P256(), a.pckKey.X, a.pckKey.Y))
	pckTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(3),
		Subject:               intelName("Intel SGX PCK Certificate"),
		NotBefore:             validFrom,
		NotAfter:              validUntil,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageContentCommitment,
		BasicConstraintsValid: true,
		SubjectKeyId:          skid[:20],
		CRLDistributionPoints: []string{"https://api.trustedservices.intel.com/sgx/certification/v4/pckcrl?ca=platform&encoding=der"},
		ExtraExtensions:       []pkix.Extension{{Id: oidSGX, Value: sgx}},
	}
	if a.pck, err = issue(pckTmpl, a.inter, a.pckKey.Public(), interKey); err != nil {
		return nil, fmt.Errorf("PCK certificate: %w", err)
	}
	a.chainPEM = append(append(pemCert(a.pck), pemCert(a.inter)...), pemCert(a.root)...)
	return a, nil
}

// sgxExtension encodes the SGX extension of a PCK certificate issued by the
// platform CA, in the layout Intel's certificates use.
func (a *tdxAuthority) sgxExtension() ([]byte, error) {
	var b cryptobyte.Builder
	item := func(b *cryptobyte.Builder, oid asn1.ObjectIdentifier, value func(*cryptobyte.Builder)) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1ObjectIdentifier(oid)
			value(b)
		})
	}
	octets := func(v []byte) func(*cryptobyte.Builder) {
		return func(b *cryptobyte.Builder) { b.AddASN1OctetString(v) }
	}
	ppid := sha256.Sum256([]byte("ccproxy attesttest PPID"))
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		item(b, oidSGXPPID, octets(ppid[:16]))
		item(b, oidSGXTCB, func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				for i := 1; i <= 16; i++ {
					b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
						b.AddASN1ObjectIdentifier(append(append(asn1.ObjectIdentifier{}, oidSGXTCB...), i))
						b.AddASN1Int64(int64(tdxCPUSVN[i-1]))
					})
				}
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
					b.AddASN1ObjectIdentifier(append(append(asn1.ObjectIdentifier{}, oidSGXTCB...), 17))
					b.AddASN1Int64(int64(tdxPCKPCESVN))
				})
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
					b.AddASN1ObjectIdentifier(append(append(asn1.ObjectIdentifier{}, oidSGXTCB...), 18))
					b.AddASN1OctetString(tdxCPUSVN)
				})
			})
		})
		item(b, oidSGXPCEID, octets([]byte{0, 0}))
		item(b, oidSGXFMSPC, octets(tdxFMSPC))
		item(b, oidSGXType, func(b *cryptobyte.Builder) { b.AddASN1Enum(int64(tdxSGXScalable)) })
		item(b, oidSGXPIID, octets(a.piid[:]))
		item(b, oidSGXConfig, func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				for i, v := range []bool{tdxDynamicPlat, tdxCachedKeys, tdxSMTEnabled} {
					b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
						b.AddASN1ObjectIdentifier(append(append(asn1.ObjectIdentifier{}, oidSGXConfig...), i+1))
						b.AddASN1Boolean(v)
					})
				}
			})
		})
	})
	return b.Bytes()
}

func (a *tdxAuthority) rootPEM() []byte { return pemCert(a.root) }

func le16(v uint16) []byte { return binary.LittleEndian.AppendUint16(nil, v) }

// rawSignature returns an ECDSA signature as the 64-byte r‖s the quote format
// uses.
func rawSignature(key *ecdsa.PrivateKey, digest []byte) ([]byte, error) {
	r, s, err := ecdsa.Sign(rand.Reader, key, digest)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 64)
	r.FillBytes(out[:32])
	s.FillBytes(out[32:])
	return out, nil
}

func rtmr(i int) []byte {
	h := sha512.Sum384([]byte(fmt.Sprintf("ccproxy attesttest RTMR%d", i)))
	return h[:]
}

func (e Evidence) mrSeam() []byte {
	if e.WrongMRSEAM {
		h := sha512.Sum384([]byte("ccproxy attesttest other TDX module"))
		return h[:]
	}
	return mrSeam()
}

// xfam of WrongXFAM evidence lacks AVX-512 (bits 5–7): still an XFAM
// go-tdx-guest's fixed-bit rules allow, but not the manifest's.
func (e Evidence) xfam() uint64 {
	switch {
	case e.WrongXFAM:
		return tdxXfam &^ 0xe0
	case e.XFAMCETOnly:
		return tdxXfam &^ xfamCET
	}
	return tdxXfam
}

// xfamCET are XFAM's CET bits, CET_U (11) and CET_S (12): tdxXfam sets
// both, and clearing them keeps an XFAM go-tdx-guest's fixed bits allow.
const xfamCET = 1<<11 | 1<<12

func mrSeam() []byte {
	h := sha512.Sum384([]byte("ccproxy attesttest TDX module"))
	return h[:]
}

func (a *tdxAuthority) quote(e Evidence) (*tpb.QuoteV4, error) {
	teeTcbSvn := tdxDefaultTeeTcbSvn
	if e.TCBLow {
		teeTcbSvn = tdxLowTeeTcbSvn
	}
	measurement, policyHash := e.measurement(), e.policyHash()
	mrConfigID := make([]byte, abi.MrConfigIDSize)
	copy(mrConfigID, policyHash[:])
	if e.MRConfigIDTail {
		copy(mrConfigID[32:], "ccproxy tail....")
	}
	header := &tpb.Header{
		Version:            abi.QuoteVersion,
		AttestationKeyType: abi.AttestationKeyType,
		TeeType:            abi.TeeTDX,
		QeSvn:              le16(tdxQeSvn),
		PceSvn:             le16(tdxPceSvn),
		QeVendorId:         intelQEVendorID,
		UserData:           make([]byte, 20),
	}
	body := &tpb.TDQuoteBody{
		TeeTcbSvn:      teeTcbSvn[:],
		MrSeam:         e.mrSeam(),
		MrSignerSeam:   make([]byte, 48),
		SeamAttributes: make([]byte, 8),
		TdAttributes:   binary.LittleEndian.AppendUint64(nil, tdxTdAttributes),
		Xfam:           binary.LittleEndian.AppendUint64(nil, e.xfam()),
		MrTd:           measurement[:],
		MrConfigId:     mrConfigID,
		MrOwner:        make([]byte, abi.MrOwnerSize),
		MrOwnerConfig:  make([]byte, abi.MrOwnerConfigSize),
		Rtmrs:          [][]byte{rtmr(0), rtmr(1), rtmr(2), rtmr(3)},
		ReportData:     e.ReportData[:],
	}
	headerBytes, err := abi.HeaderToAbiBytes(header)
	if err != nil {
		return nil, fmt.Errorf("encoding header: %w", err)
	}
	bodyBytes, err := abi.TdQuoteBodyToAbiBytes(body)
	if err != nil {
		return nil, fmt.Errorf("encoding TD quote body: %w", err)
	}
	digest := sha256.Sum256(append(headerBytes, bodyBytes...))
	signature, err := rawSignature(a.attKey, digest[:])
	if err != nil {
		return nil, fmt.Errorf("signing quote: %w", err)
	}
	if e.BadSignature {
		signature[63] ^= 0x01
	}
	attKey := make([]byte, 64)
	a.attKey.X.FillBytes(attKey[:32])
	a.attKey.Y.FillBytes(attKey[32:])

	// The quoting enclave's report binds the attestation key:
	// REPORTDATA = SHA-256(attestation key ‖ QE auth data) ‖ 32 zero bytes.
	authData := make([]byte, tdxQeAuthLength)
	for i := range authData {
		authData[i] = byte(i)
	}
	binding := sha256.Sum256(append(append([]byte{}, attKey...), authData...))
	qeReportData := make([]byte, abi.ReportDataSize)
	copy(qeReportData, binding[:])
	mrSigner := sha256.Sum256([]byte("ccproxy attesttest QE signer"))
	mrEnclave := sha256.Sum256([]byte("ccproxy attesttest QE"))
	qeReport := &tpb.EnclaveReport{
		CpuSvn:     tdxCPUSVN,
		MiscSelect: 0,
		Reserved1:  make([]byte, 28),
		Attributes: append([]byte{0x11}, make([]byte, 15)...),
		MrEnclave:  mrEnclave[:],
		Reserved2:  make([]byte, 32),
		MrSigner:   mrSigner[:],
		Reserved3:  make([]byte, 96),
		IsvProdId:  2,
		IsvSvn:     tdxQeSvn,
		Reserved4:  make([]byte, 60),
		ReportData: qeReportData,
	}
	qeReportBytes, err := abi.EnclaveReportToAbiBytes(qeReport)
	if err != nil {
		return nil, fmt.Errorf("encoding QE report: %w", err)
	}
	qeDigest := sha256.Sum256(qeReportBytes)
	qeSignature, err := rawSignature(a.pckKey, qeDigest[:])
	if err != nil {
		return nil, fmt.Errorf("signing QE report: %w", err)
	}
	chain := append([]byte{}, a.chainPEM...)
	qeCertData := &tpb.QEReportCertificationData{
		QeReport:          qeReport,
		QeReportSignature: qeSignature,
		QeAuthData:        &tpb.QeAuthData{ParsedDataSize: uint32(len(authData)), Data: authData},
		PckCertificateChainData: &tpb.PCKCertificateChainData{
			CertificateDataType: 5, // PCK certificate chain
			Size:                uint32(len(chain)),
			PckCertChain:        chain,
		},
	}
	// Sizes as the ABI lays them out: QE report, its signature, the auth
	// data with its 2-byte length, the chain with its type and 4-byte size.
	certDataSize := len(qeReportBytes) + len(qeSignature) + 2 + len(authData) + 6 + len(chain)
	quote := &tpb.QuoteV4{
		Header:      header,
		TdQuoteBody: body,
		// Signature, attestation key, then certification data type (2) and
		// size (4) in front of the certification data.
		SignedDataSize: uint32(64 + 64 + 6 + certDataSize),
		SignedData: &tpb.Ecdsa256BitQuoteV4AuthData{
			Signature:           signature,
			EcdsaAttestationKey: attKey,
			CertificationData: &tpb.CertificationData{
				CertificateDataType:       6, // QE report certification data
				Size:                      uint32(certDataSize),
				QeReportCertificationData: qeCertData,
			},
		},
	}
	if err := abi.CheckQuoteV4(quote); err != nil {
		return nil, fmt.Errorf("built an invalid quote: %w", err)
	}
	return quote, nil
}

func (a *tdxAuthority) quoteProto(e Evidence) ([]byte, error) {
	q, err := a.quote(e)
	if err != nil {
		return nil, err
	}
	return proto.Marshal(q)
}

func (a *tdxAuthority) quoteRaw(e Evidence) ([]byte, error) {
	q, err := a.quote(e)
	if err != nil {
		return nil, err
	}
	return abi.QuoteToAbiBytes(q)
}
