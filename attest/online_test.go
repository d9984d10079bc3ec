package attest_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"io"
	"math/big"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ccproxy-dev/ccproxy/attest"
	"github.com/ccproxy-dev/ccproxy/attest/attesttest"
	"github.com/ccproxy-dev/ccproxy/internal/failure"
	"github.com/google/go-sev-guest/kds"
	spb "github.com/google/go-sev-guest/proto/sevsnp"
	"github.com/google/go-sev-guest/testing/data"
	"google.golang.org/protobuf/proto"
)

// fakeKDS answers AMD KDS URLs from memory and counts the requests; no
// request leaves the process.
type fakeKDS struct {
	mu    sync.Mutex
	docs  map[string][]byte
	count map[string]int
}

func (k *fakeKDS) RoundTrip(r *http.Request) (*http.Response, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	url := r.URL.String()
	k.count[url]++
	body, ok := k.docs[url]
	status := http.StatusOK
	if !ok {
		status, body = http.StatusNotFound, []byte("not found")
	}
	return &http.Response{StatusCode: status, Status: http.StatusText(status), Body: io.NopCloser(bytes.NewReader(body)), Header: http.Header{}, Request: r}, nil
}

// snpChain returns the fake ARK and the VCEK of default evidence.
func snpChain(t *testing.T, a *attesttest.Authority) (ark *x509.Certificate, vcek []byte) {
	t.Helper()
	_, rest := pem.Decode(a.SNPRootsPEM())
	block, _ := pem.Decode(rest)
	ark, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := a.SNP(attesttest.Evidence{})
	if err != nil {
		t.Fatal(err)
	}
	att := &spb.Attestation{}
	if err := proto.Unmarshal(doc, att); err != nil {
		t.Fatal(err)
	}
	return ark, att.GetCertificateChain().GetVcekCert()
}

// arkCRL returns a CRL signed by the fake ARK, revoking the given serials.
func arkCRL(t *testing.T, ark *x509.Certificate, revoked ...*big.Int) []byte {
	t.Helper()
	var entries []x509.RevocationListEntry
	for _, s := range revoked {
		entries = append(entries, x509.RevocationListEntry{SerialNumber: s, RevocationTime: now.Add(-time.Hour)})
	}
	crl, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number:                    big.NewInt(1),
		ThisUpdate:                now.Add(-24 * time.Hour),
		NextUpdate:                now.Add(24 * time.Hour),
		SignatureAlgorithm:        x509.SHA384WithRSAPSS,
		RevokedCertificateEntries: entries,
	}, ark, data.ARKPrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	return crl
}

// TestOnlineFetchesFromKDS checks the oldest format, a report without its
// VCEK: online, the VCEK (and the ARK/ASK chain and CRL) come from AMD KDS,
// through the cache.
func TestOnlineFetchesFromKDS(t *testing.T) {
	a := testAuthority(t)
	ark, vcek := snpChain(t, a)
	h := newHandshake(t)
	raw, err := a.SNPReport(attesttest.Evidence{ReportData: h.rd})
	if err != nil {
		t.Fatal(err)
	}
	chip := a.ChipID()
	tcb := kds.TCBVersion(0xd516000000000004) // the default evidence's TCB
	vcekURL := kds.VCEKCertURL("Milan", chip[:], tcb)
	k := &fakeKDS{count: map[string]int{}, docs: map[string][]byte{
		"https://kdsintf.amd.com/vcek/v1/Milan/cert_chain": a.SNPRootsPEM(),
		vcekURL: vcek,
		"https://kdsintf.amd.com/vcek/v1/Milan/crl": arkCRL(t, ark),
	}}
	opts := attest.Options{
		SNPRoots:   a.SNPRootsPEM(),
		Reference:  mustManifest(t, a.ManifestJSON()),
		Nonce:      h.nonce,
		Now:        clock,
		Cache:      attest.NewCache(time.Hour),
		HTTPClient: &http.Client{Transport: k},
	}
	cert := certFor(t, h, attest.OIDSNP, raw, now)
	for i := 0; i < 2; i++ {
		res := attest.CheckCertificate(context.Background(), cert, opts)
		if res.Mode != failure.OK || res.Verdict != attest.Verified {
			t.Fatalf("check %d: %s/%s (%s)", i, res.Verdict, res.Mode, res.Detail)
		}
		if got := fieldValue(res, "Revocation"); !strings.Contains(got, "checked against") {
			t.Errorf("revocation: %q", got)
		}
	}
	if k.count[vcekURL] != 1 {
		t.Errorf("VCEK fetched %d times, want once (cached)", k.count[vcekURL])
	}

	// A revoked ASK fails verification.
	ask, _ := pem.Decode(a.SNPRootsPEM())
	askCert, _ := x509.ParseCertificate(ask.Bytes)
	k.docs["https://kdsintf.amd.com/vcek/v1/Milan/crl"] = arkCRL(t, ark, askCert.SerialNumber)
	opts.Cache = nil
	res := attest.CheckCertificate(context.Background(), cert, opts)
	if res.Mode != failure.EvidenceInvalid || !strings.Contains(res.Detail, "revoked") {
		t.Errorf("revoked ASK: %s (%s)", res.Mode, res.Detail)
	}
}

// TestEvidenceCRLOffline checks the CRL a Contrast issuer attaches to the
// chain: offline it is checked while it is fresh.
func TestEvidenceCRLOffline(t *testing.T) {
	a := testAuthority(t)
	ark, _ := snpChain(t, a)
	askBlock, _ := pem.Decode(a.SNPRootsPEM())
	ask, _ := x509.ParseCertificate(askBlock.Bytes)
	for _, tc := range []struct {
		name     string
		crl      []byte
		wantMode failure.Mode
		want     string
	}{
		{"fresh CRL", arkCRL(t, ark), failure.OK, "checked against the ARK-signed CRL"},
		{"ASK revoked", arkCRL(t, ark, ask.SerialNumber), failure.EvidenceInvalid, "ASK was revoked"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHandshake(t)
			doc, err := a.SNP(attesttest.Evidence{ReportData: h.rd})
			if err != nil {
				t.Fatal(err)
			}
			att := &spb.Attestation{}
			if err := proto.Unmarshal(doc, att); err != nil {
				t.Fatal(err)
			}
			att.CertificateChain.Extras = map[string][]byte{"00569ee4-e480-4fba-bbf4-45b629901180": tc.crl}
			withCRL, err := proto.Marshal(att)
			if err != nil {
				t.Fatal(err)
			}
			res := attest.CheckCertificate(context.Background(), certFor(t, h, attest.OIDSNP, withCRL, now), attest.Options{
				Offline: true, SNPRoots: a.SNPRootsPEM(), Reference: mustManifest(t, a.ManifestJSON()), Nonce: h.nonce, Now: clock,
			})
			if res.Mode != tc.wantMode {
				t.Fatalf("got %s (%s), want %s", res.Mode, res.Detail, tc.wantMode)
			}
			if !strings.Contains(res.Detail+fieldValue(res, "Revocation"), tc.want) {
				t.Errorf("detail %q / revocation %q lack %q", res.Detail, fieldValue(res, "Revocation"), tc.want)
			}
			if !strings.Contains(fieldValue(res, "CRL"), "attached") {
				t.Errorf("CRL field %q", fieldValue(res, "CRL"))
			}
		})
	}
}
