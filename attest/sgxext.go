package attest

import (
	"bytes"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
)

// OIDs inside the SGX extension of a PCK certificate (Intel SGX PCK
// Certificate and CRL Profile). go-tdx-guest (v0.3.1 and the pin ccproxy links) parses PPID, TCB, PCEID
// and FMSPC; Contrast's newer checks also need SGX type, platform instance
// ID and the platform configuration.
var (
	oidSGXExtension = asn1.ObjectIdentifier{1, 2, 840, 113741, 1, 13, 1}
	oidSGXFMSPC     = asn1.ObjectIdentifier{1, 2, 840, 113741, 1, 13, 1, 4}
	oidSGXType      = asn1.ObjectIdentifier{1, 2, 840, 113741, 1, 13, 1, 5}
	oidSGXPIID      = asn1.ObjectIdentifier{1, 2, 840, 113741, 1, 13, 1, 6}
	oidSGXConfig    = asn1.ObjectIdentifier{1, 2, 840, 113741, 1, 13, 1, 7}
	oidSGXDynamic   = asn1.ObjectIdentifier{1, 2, 840, 113741, 1, 13, 1, 7, 1}
	oidSGXSMT       = asn1.ObjectIdentifier{1, 2, 840, 113741, 1, 13, 1, 7, 3}
)

// SGX types (the ENUMERATED value of oidSGXType).
const (
	sgxTypeStandard              = 0
	sgxTypeScalable              = 1
	sgxTypeScalableWithIntegrity = 2
)

// pckInfo is what ccproxy reads from a PCK certificate's SGX extension. Nil
// pointers mean the item is absent (processor-CA certificates carry neither
// PIID nor configuration).
type pckInfo struct {
	fmspc           []byte
	sgxType         *int
	piid            []byte
	dynamicPlatform *bool
	smtEnabled      *bool
}

type sgxItem struct {
	ID    asn1.ObjectIdentifier
	Value asn1.RawValue
}

func parsePCKInfo(cert *x509.Certificate) (*pckInfo, error) {
	var ext []byte
	for _, e := range cert.Extensions {
		if e.Id.Equal(oidSGXExtension) {
			ext = e.Value
			break
		}
	}
	if ext == nil {
		return nil, errors.New("the PCK certificate has no SGX extension")
	}
	return parseSGXExtension(ext)
}

// parseSGXExtension parses the value of the SGX extension.
func parseSGXExtension(ext []byte) (*pckInfo, error) {
	var items []sgxItem
	if rest, err := asn1.Unmarshal(ext, &items); err != nil || len(rest) != 0 {
		return nil, fmt.Errorf("the PCK certificate's SGX extension does not parse: %v", err)
	}
	info := &pckInfo{}
	for _, it := range items {
		switch {
		case it.ID.Equal(oidSGXFMSPC):
			info.fmspc = octets(it.Value)
		case it.ID.Equal(oidSGXPIID):
			info.piid = octets(it.Value)
		case it.ID.Equal(oidSGXType):
			if it.Value.Tag == asn1.TagEnum && len(it.Value.Bytes) == 1 {
				t := int(it.Value.Bytes[0])
				info.sgxType = &t
			}
		case it.ID.Equal(oidSGXConfig):
			var cfg []sgxItem
			if _, err := asn1.Unmarshal(it.Value.FullBytes, &cfg); err != nil {
				return nil, fmt.Errorf("the PCK certificate's platform configuration does not parse: %v", err)
			}
			for _, c := range cfg {
				var b bool
				if _, err := asn1.Unmarshal(c.Value.FullBytes, &b); err != nil {
					continue
				}
				switch {
				case c.ID.Equal(oidSGXDynamic):
					info.dynamicPlatform = &b
				case c.ID.Equal(oidSGXSMT):
					info.smtEnabled = &b
				}
			}
		}
	}
	return info, nil
}

func octets(v asn1.RawValue) []byte {
	if v.Class != asn1.ClassUniversal || v.Tag != asn1.TagOctetString {
		return nil
	}
	return v.Bytes
}

// pckCertificates returns the PCK chain a quote carries (leaf first), as
// Contrast finds it: PEM blocks, the PCK certificate named "Intel SGX PCK
// Certificate".
func pckCertificates(chainPEM []byte) (pck *x509.Certificate, chain []*x509.Certificate) {
	rest := bytes.TrimRight(chainPEM, "\x00")
	for len(rest) > 0 {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			continue
		}
		chain = append(chain, c)
		if pck == nil && c.Subject.CommonName == "Intel SGX PCK Certificate" {
			pck = c
		}
	}
	return pck, chain
}

func sgxTypeName(t int) string {
	switch t {
	case sgxTypeStandard:
		return "Standard"
	case sgxTypeScalable:
		return "Scalable"
	case sgxTypeScalableWithIntegrity:
		return "ScalableWithIntegrity"
	}
	return fmt.Sprintf("unknown (%d)", t)
}
