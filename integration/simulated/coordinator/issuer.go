package coordinator

import (
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/asn1"
	"errors"
	"fmt"
	"time"

	"github.com/ccproxy-dev/ccproxy/attest/attesttest"
	"github.com/ccproxy-dev/ccproxy/internal/atls"
)

// issuer is the Coordinator's atls.Issuer: attesttest evidence for the
// Coordinator's platform, bent by the connection's fault.
type issuer struct {
	c *Coordinator
}

// Values the evidence faults put in place of the expected ones. Derived, not
// random, so the mismatch texts are stable across runs.
func otherPolicyHash() [32]byte {
	return sha256.Sum256([]byte("ccproxy simulated coordinator: another policy"))
}

func otherMeasurement() [48]byte {
	return sha512.Sum384([]byte("ccproxy simulated coordinator: another launch measurement"))
}

func (i *issuer) Issue(ctx context.Context, reportData [64]byte) (asn1.ObjectIdentifier, []byte, error) {
	f := faultFrom(ctx)
	ev := attesttest.Evidence{ReportData: reportData, VCPUs: i.c.vcpus}
	switch f {
	case FaultIssuerSlow:
		t := time.NewTimer(i.c.getIssuerDelay())
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return nil, nil, fmt.Errorf("getting attestation report: %w", ctx.Err())
		}
	case FaultIssuerError:
		return nil, nil, errors.New("getting attestation report: simulated issuer failure")
	case FaultNoExtension:
		return nil, nil, nil
	case FaultReportDataUnbound:
		// Evidence over the certificate key but another nonce: what a replayed
		// or mis-wired issuer produces.
		other, err := atls.NewNonce()
		if err != nil {
			return nil, nil, err
		}
		ev.ReportData = atls.ReportData(i.c.spki, other)
	case FaultWrongPolicyHash:
		ev.PolicyHash = otherPolicyHash()
	case FaultWrongMeasurement:
		ev.Measurement = otherMeasurement()
	case FaultTCBLow:
		ev.TCBLow = true
	case FaultBadSignature:
		ev.BadSignature = true
	case FaultUntrustedIDKey:
		ev.UntrustedIDKey = true
	case FaultChipNotAllowed:
		ev.OtherChip = true
	case FaultWrongMRSEAM:
		ev.WrongMRSEAM = true
	case FaultWrongXFAM:
		ev.WrongXFAM = true
	case FaultPolicyAndMeasurement:
		ev.PolicyHash, ev.Measurement = otherPolicyHash(), otherMeasurement()
	case FaultXFAMCETOnly:
		ev.XFAMCETOnly = true
	case FaultMRConfigIDTail:
		ev.MRConfigIDTail = true
	}
	platform := i.c.platform
	if f == FaultWrongPlatform {
		platform = map[string]string{PlatformSNP: PlatformTDX, PlatformTDX: PlatformSNP}[platform]
	}
	if platform == PlatformTDX {
		doc, err := i.c.auth.TDX(ev)
		if err != nil {
			return nil, nil, fmt.Errorf("getting TDX quote: %w", err)
		}
		return atls.OIDTDX(), doc, nil
	}
	doc, err := i.c.auth.SNP(ev)
	if err != nil {
		return nil, nil, fmt.Errorf("getting SNP report: %w", err)
	}
	return atls.OIDSNP(), doc, nil
}
