package attest

import (
	"bytes"
	"crypto/x509"
	_ "embed"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"

	"github.com/google/go-sev-guest/verify/trust"
)

// intelSGXRootPEM is Intel's SGX Provisioning Certification Root CA, as
// go-tdx-guest embeds it (verify/trusted_root.pem, Apache-2.0; the same file in v0.3.1 and the pin ccproxy links). A copy
// is needed because go-tdx-guest prints a warning to standard output
// whenever it falls back to its own copy.
//
//go:embed intel_sgx_root_ca.pem
var intelSGXRootPEM []byte

func parsePEMCertificates(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	rest := data
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %w", len(certs)+1, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, errors.New("no PEM CERTIFICATE block")
	}
	return certs, nil
}

// parseTDXRoots returns a pool of the given roots.
func parseTDXRoots(data []byte) (*x509.CertPool, error) {
	certs, err := parsePEMCertificates(data)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	for _, c := range certs {
		pool.AddCert(c)
	}
	return pool, nil
}

// tdxRoots returns the configured TDX roots or Intel's.
func tdxRoots(custom []byte) (*x509.CertPool, error) {
	if custom != nil {
		return parseTDXRoots(custom)
	}
	return parseTDXRoots(intelSGXRootPEM)
}

// amdRoot is one ARK with the intermediates it signed.
type amdRoot struct {
	line string // product line, e.g. Milan
	ark  *x509.Certificate
	ask  *x509.Certificate // may be nil: then taken from the evidence
	asvk *x509.Certificate
}

// parseSNPRoots reads ARKs (self-signed) and the ASKs / ASVKs they issued.
// The product line comes from the intermediate's name (SEV-Milan,
// SEV-VLEK-Milan) or else the ARK's (ARK-Milan). Certificates are paired by
// name only: the signatures are checked by go-sev-guest's chain
// verification, and a root's self-signature proves nothing.
func parseSNPRoots(data []byte) ([]amdRoot, error) {
	certs, err := parsePEMCertificates(data)
	if err != nil {
		return nil, err
	}
	var roots []amdRoot
	var intermediates []*x509.Certificate
	for _, c := range certs {
		if bytes.Equal(c.RawSubject, c.RawIssuer) {
			roots = append(roots, amdRoot{ark: c, line: strings.TrimPrefix(c.Subject.CommonName, "ARK-")})
		} else {
			intermediates = append(intermediates, c)
		}
	}
	if len(roots) == 0 {
		return nil, errors.New("no self-signed AMD root key (ARK) certificate")
	}
	for _, c := range intermediates {
		placed := false
		for i := range roots {
			if !bytes.Equal(c.RawIssuer, roots[i].ark.RawSubject) {
				continue
			}
			cn := c.Subject.CommonName
			switch {
			case strings.HasPrefix(cn, "SEV-VLEK-"):
				roots[i].asvk, roots[i].line = c, strings.TrimPrefix(cn, "SEV-VLEK-")
			case strings.HasPrefix(cn, "SEV-"):
				roots[i].ask, roots[i].line = c, strings.TrimPrefix(cn, "SEV-")
			default:
				return nil, fmt.Errorf("certificate %q is issued by an ARK but is neither an ASK (SEV-<product>) nor an ASVK (SEV-VLEK-<product>)", cn)
			}
			placed = true
			break
		}
		if !placed {
			return nil, fmt.Errorf("certificate %q is not issued by any ARK in the bundle", c.Subject.CommonName)
		}
	}
	// A self-signed certificate is an ARK if it is named like one or
	// issued an AMD intermediate.
	var arks []amdRoot
	for _, r := range roots {
		if strings.HasPrefix(r.ark.Subject.CommonName, "ARK-") || r.ask != nil || r.asvk != nil {
			arks = append(arks, r)
		}
	}
	if len(arks) == 0 {
		return nil, errors.New("no AMD root key (ARK) certificate: no self-signed ARK-<product> certificate or one that issued an ASK")
	}
	return arks, nil
}

// snpTrustedRoots builds go-sev-guest trusted roots for one check. They are
// built afresh every time because a CRL from the evidence is attached to
// them, and go-sev-guest caches nothing else on them. evidenceASK is the
// evidence's ASK, used only for a configured ARK that came without its ASK:
// chain verification then checks that the ARK signed it.
func snpTrustedRoots(custom []byte, line string, evidenceASK *x509.Certificate) (map[string][]*trust.AMDRootCerts, error) {
	if custom == nil {
		r, err := trust.GetDefaultRootCerts(line)
		if err != nil {
			return nil, fmt.Errorf("no built-in AMD roots for product line %q", line)
		}
		return map[string][]*trust.AMDRootCerts{line: {r}}, nil
	}
	parsed, err := parseSNPRoots(custom)
	if err != nil {
		return nil, fmt.Errorf("trusted SNP roots: %w", err)
	}
	out := map[string][]*trust.AMDRootCerts{}
	for _, r := range parsed {
		ask := r.ask
		if ask == nil && evidenceASK != nil && bytes.Equal(evidenceASK.RawIssuer, r.ark.RawSubject) {
			ask = evidenceASK
		}
		root := trust.AMDRootCertsProduct(r.line)
		root.ProductCerts = &trust.ProductCerts{Ark: r.ark, Ask: ask, Asvk: r.asvk}
		out[r.line] = append(out[r.line], root)
	}
	return out, nil
}
