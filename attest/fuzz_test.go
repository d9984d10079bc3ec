package attest

import (
	"context"
	"encoding/asn1"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/ccproxy-dev/ccproxy/attest/attesttest"
	"github.com/ccproxy-dev/ccproxy/internal/failure"
	"google.golang.org/protobuf/encoding/protowire"
)

// The fuzz targets feed untrusted bytes to the decoders and, when they
// decode, run the whole check without the panic guard of checkEvidence, so
// a panic anywhere fails the target.

var (
	fuzzOnce sync.Once
	fuzzAuth *attesttest.Authority
	fuzzErr  error
)

func fuzzAuthority(f *testing.F) *attesttest.Authority {
	fuzzOnce.Do(func() { fuzzAuth, fuzzErr = attesttest.NewAuthority() })
	if fuzzErr != nil {
		f.Fatal(fuzzErr)
	}
	return fuzzAuth
}

func fuzzOptions(f *testing.F, a *attesttest.Authority) Options {
	m, err := ParseManifest(a.LegacyManifestJSON())
	if err != nil {
		f.Fatal(err)
	}
	return Options{
		Offline:   true,
		SNPRoots:  a.SNPRootsPEM(),
		TDXRoots:  a.TDXRootsPEM(),
		Reference: m,
		Nonce:     make([]byte, 32),
		SPKI:      []byte("spki"),
		Now:       func() time.Time { return time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC) },
	}
}

// seeds returns valid evidence of every format, plus the real samples.
func seeds(f *testing.F, a *attesttest.Authority) map[string][]byte {
	e := attesttest.Evidence{}
	out := map[string][]byte{"insecure": attesttest.Insecure(e), "raw64": make([]byte, 64)}
	var err error
	if out["snp"], err = a.SNP(e); err != nil {
		f.Fatal(err)
	}
	if out["snpraw"], err = a.SNPReport(e); err != nil {
		f.Fatal(err)
	}
	if out["tdx"], err = a.TDX(e); err != nil {
		f.Fatal(err)
	}
	if out["tdxraw"], err = a.TDXQuote(e); err != nil {
		f.Fatal(err)
	}
	for _, name := range []string{"snp_milan_report.bin", "tdx_quote_spr_e4.dat"} {
		b, err := os.ReadFile("testdata/" + name)
		if err != nil {
			f.Fatal(err)
		}
		out[name] = b
	}
	// A QuoteV4 with a collateral trailer, as newer Contrast issuers send.
	trailer := protowire.AppendTag(nil, tdxTrailerField, protowire.BytesType)
	trailer = protowire.AppendBytes(trailer, []byte{0x0a, 0x02, '{', '}'})
	out["tdxtrailer"] = append(append([]byte{}, out["tdx"]...), trailer...)
	return out
}

var fuzzOIDs = []asn1.ObjectIdentifier{OIDSNP, OIDTDX, OIDInsecure}

func FuzzDecodeExtension(f *testing.F) {
	a := fuzzAuthority(f)
	opts := fuzzOptions(f, a)
	s := seeds(f, a)
	for _, b := range s {
		for i := range fuzzOIDs {
			f.Add(uint8(i), b)
		}
	}
	f.Fuzz(func(t *testing.T, which uint8, value []byte) {
		oid := fuzzOIDs[int(which)%len(fuzzOIDs)]
		ev, err := decodeExtension(oid, value)
		if err != nil {
			if ev != nil {
				t.Fatal("evidence and error")
			}
			return
		}
		res := evaluateEvidence(context.Background(), ev, opts)
		if !res.Mode.Known() || res.Verdict == "" {
			t.Fatalf("result %+v", res)
		}
		if res.Mode != failure.OK && res.Detail == "" {
			t.Fatalf("mode %s without detail", res.Mode)
		}
	})
}

func FuzzCheckFile(f *testing.F) {
	a := fuzzAuthority(f)
	opts := fuzzOptions(f, a)
	for _, b := range seeds(f, a) {
		f.Add(b)
	}
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > MaxEvidenceSize {
			return
		}
		ev, err := decodeFile(data)
		if err != nil {
			return
		}
		res := evaluateEvidence(context.Background(), ev, opts)
		if !res.Mode.Known() {
			t.Fatalf("unknown mode %q", res.Mode)
		}
		// And the public entry point, which must agree.
		if got := CheckFile(context.Background(), data, opts); got.Mode != res.Mode {
			t.Fatalf("CheckFile says %s, the evaluation %s", got.Mode, res.Mode)
		}
	})
}

func FuzzParseManifest(f *testing.F) {
	a := fuzzAuthority(f)
	f.Add(a.ManifestJSON())
	f.Add(a.LegacyManifestJSON())
	f.Add([]byte(`{"Policies": {"aa": ["x"]}, "ReferenceValues": {"SNP": {"MinimumTCB": {}}, "TrustedMeasurement": "00"}}`))
	f.Add([]byte(`{"ReferenceValues": {"tdx": [{"Rtrms": ["", "", "", ""]}]}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseManifest(data)
		if err != nil {
			return
		}
		if len(m.SNP)+len(m.TDX) == 0 {
			t.Fatal("parsed a manifest without reference values")
		}
		for _, h := range m.CoordinatorPolicyHashes() {
			if len(h) != 32 {
				t.Fatalf("policy hash of %d bytes", len(h))
			}
		}
		for _, r := range m.SNP {
			if len(r.TrustedMeasurement) != 48 {
				t.Fatalf("measurement of %d bytes", len(r.TrustedMeasurement))
			}
		}
	})
}

func FuzzSGXExtension(f *testing.F) {
	a := fuzzAuthority(f)
	tdx, err := a.TDX(attesttest.Evidence{})
	if err != nil {
		f.Fatal(err)
	}
	ev, err := decodeExtension(OIDTDX, tdx)
	if err != nil {
		f.Fatal(err)
	}
	pck, _ := pckCertificates(ev.tdx.GetSignedData().GetCertificationData().GetQeReportCertificationData().GetPckCertificateChainData().GetPckCertChain())
	for _, e := range pck.Extensions {
		if e.Id.Equal(oidSGXExtension) {
			f.Add(e.Value)
		}
	}
	f.Add([]byte{0x30, 0x00})
	f.Fuzz(func(t *testing.T, ext []byte) {
		info, err := parseSGXExtension(ext)
		if err == nil && info == nil {
			t.Fatal("no info and no error")
		}
	})
}
