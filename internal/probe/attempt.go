package probe

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"net"
	"time"

	"github.com/ccproxy-dev/ccproxy/attest"
	"github.com/ccproxy-dev/ccproxy/internal/atls"
	"github.com/ccproxy-dev/ccproxy/internal/failure"
	"github.com/ccproxy-dev/ccproxy/internal/verdict"
	"github.com/ccproxy-dev/ccproxy/proxy/inspect"
)

// Attempt is one connection of a probe.
type Attempt struct {
	// NonceStyle is alpn or sni.
	NonceStyle string `json:"nonce_style"`
	// ServerName and ALPN are what the ClientHello offered.
	ServerName string   `json:"server_name,omitempty"`
	ALPN       []string `json:"alpn,omitempty"`
	// Nonce is the client nonce, hex.
	Nonce string `json:"nonce"`
	// Address is the IP:port connected to.
	Address string       `json:"address,omitempty"`
	Mode    failure.Mode `json:"failure_mode"`
	Detail  string       `json:"failure_detail,omitempty"`
	// Error is the error text the probe's own client saw (TLS, gRPC or
	// dial), which is what a Contrast CLI would print.
	Error              string         `json:"error,omitempty"`
	TLSVersion         string         `json:"tls_version,omitempty"`
	NegotiatedProtocol string         `json:"negotiated_protocol,omitempty"`
	Timings            Timings        `json:"timings_ms"`
	Evidence           *attest.Result `json:"evidence,omitempty"`
	State              *State         `json:"state,omitempty"`
	Start              time.Time      `json:"-"`
	End                time.Time      `json:"-"`

	// cert is the Coordinator's certificate, when one came.
	cert *x509.Certificate
}

// prober runs the attempts of one Run or one refinement.
type prober struct {
	cfg        Config
	host, port string
	api        bool
}

// attempt makes one connection: dial, attested handshake with a fresh nonce
// placed by style, evidence check and, if p.api, the user API. Its error is
// only for a failure of this host (no randomness).
func (p *prober) attempt(ctx context.Context, style atls.NonceStyle, sni string) (*Attempt, error) {
	nonce, err := atls.NewNonce()
	if err != nil {
		return nil, err
	}
	timeout := p.cfg.timeout()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	a := &Attempt{NonceStyle: style.String(), Nonce: hex.EncodeToString(nonce), Start: time.Now()}
	defer func() { a.End = time.Now() }()

	w := newWire(timeout)
	raw, err := p.dial(ctx, &a.Timings)
	w.dialed(err)
	if err != nil {
		v := w.verdict()
		a.Mode, a.Detail, a.Error = v.Mode, v.Detail, err.Error()
		return a, nil
	}
	a.Address = raw.RemoteAddr().String()
	conn := &tappedConn{Conn: raw, w: w}

	// The evidence check runs inside the handshake, as the CLI's does: a
	// Coordinator whose evidence fails is never talked to.
	var seen *x509.Certificate
	var ev *attest.Result
	cfg := atls.ClientConfig(nonce, style, sni, func(cert *x509.Certificate) error {
		r := p.check(ctx, cert, nonce)
		ev = &r
		if r.Mode != failure.OK {
			return fmt.Errorf("%s: %s", r.Mode, r.Detail)
		}
		return nil
	})
	// atls checks the certificate's validity at this host's time before it
	// calls the evidence check; keep the certificate so a clock skew is
	// still measured and named.
	processCert := cfg.VerifyPeerCertificate
	cfg.VerifyPeerCertificate = func(rawCerts [][]byte, chains [][]*x509.Certificate) error {
		if len(rawCerts) > 0 {
			seen, _ = x509.ParseCertificate(rawCerts[0])
		}
		return processCert(rawCerts, chains)
	}
	cfg.MaxVersion = p.cfg.maxVersion()
	a.ServerName, a.ALPN = cfg.ServerName, cfg.NextProtos

	tc := tls.Client(conn, cfg)
	hsStart := time.Now()
	hsErr := tc.HandshakeContext(ctx)
	a.Timings.Handshake = time.Since(hsStart)
	f := w.facts()
	if f.FirstByteSeen {
		a.Timings.FirstByte = f.FirstByte
	}
	if f.Version != 0 {
		// Known from the ServerHello also when the handshake failed later.
		a.TLSVersion = inspect.VersionName(f.Version)
	}
	if ev == nil && seen != nil {
		r := p.check(ctx, seen, nonce)
		ev = &r
	}
	a.Evidence, a.cert = ev, seen

	if hsErr != nil {
		tc.Close()
		a.Error = hsErr.Error()
		v := w.verdict()
		a.decide(verdict.Observed{
			OwnHandshake: true,
			Wire:         verdict.Finding{Mode: v.Mode, Detail: sentence(v.Detail) + " The probe's TLS client: " + hsErr.Error() + "."},
			Evidence:     evidenceFinding(ev),
		})
		return a, nil
	}
	state := tc.ConnectionState()
	a.TLSVersion = inspect.VersionName(state.Version)
	a.NegotiatedProtocol = state.NegotiatedProtocol
	attested := handshakeSummary(a, ev)
	if !p.api {
		tc.Close()
		// The probe's own TLS client finished the handshake, which is all
		// a handshake-only probe asks: what the peer does after it is no
		// part of the answer.
		a.decide(verdict.Observed{
			OwnHandshake: true,
			Wire:         verdict.Finding{Mode: failure.OK, Detail: attested + "."},
			Evidence:     evidenceFinding(ev),
		})
		return a, nil
	}

	apiStart := time.Now()
	ec := &endConn{Conn: tc}
	st, apiErr := getManifests(ctx, ec, state, net.JoinHostPort(p.host, p.port))
	a.Timings.UserAPI = time.Since(apiStart)
	ec.Close()
	a.State = st
	// Why the call failed below gRPC, if it did: the Coordinator ended the
	// connection (in TLS or TCP), or the probe's time ran out.
	var broke error
	if apiErr != nil {
		a.Error = apiErr.Error()
		for _, e := range []error{ec.ended(), conn.peerEnded(), ctx.Err()} {
			if e != nil {
				broke = e
				break
			}
		}
	}
	if unanswered(apiErr, broke) {
		// Only the probe knows its call went unanswered; the classifier
		// names what that means on the wire.
		w.unanswered("GetManifests", broke)
	}
	a.decide(apiObserved(w.verdict(), evidenceFinding(ev), judgeState(st, apiErr, broke, p.cfg.manifest(), attested), apiErr))
	return a, nil
}

// decide sets the attempt's mode and detail: verdict.Decide names them
// from what the attempt observed.
func (a *Attempt) decide(o verdict.Observed) {
	f := verdict.Decide(o)
	a.Mode, a.Detail = f.Mode, f.Detail
}

// evidenceFinding is attest's verdict on the Coordinator's certificate, nil
// when none came.
func evidenceFinding(ev *attest.Result) *verdict.Finding {
	if ev == nil {
		return nil
	}
	return &verdict.Finding{Mode: ev.Mode, Detail: ev.Detail}
}

// apiObserved is what an attempt whose handshake finished observed: the
// wire (after the user API call; a failed call is added to a failed wire's
// detail), the evidence and the Coordinator's state.
func apiObserved(wire inspect.Verdict, ev *verdict.Finding, state verdict.Finding, apiErr error) verdict.Observed {
	w := verdict.Finding{Mode: wire.Mode, Detail: wire.Detail}
	if apiErr != nil && wire.Mode != failure.OK {
		w.Detail = sentence(wire.Detail) + " The user API call failed: " + apiErr.Error() + "."
	}
	return verdict.Observed{OwnHandshake: true, Wire: w, Evidence: ev, State: &state}
}

// check runs attest on the Coordinator's certificate, bound to nonce.
func (p *prober) check(ctx context.Context, cert *x509.Certificate, nonce []byte) attest.Result {
	opts := p.cfg.Attest
	opts.Nonce, opts.SPKI = nonce, nil
	return attest.CheckCertificate(ctx, cert, opts)
}

// dial resolves (timed separately) and connects, trying each address in
// the resolver's order; the first error is returned, as net.Dialer does.
func (p *prober) dial(ctx context.Context, t *Timings) (net.Conn, error) {
	ips := []string{p.host}
	if net.ParseIP(p.host) == nil {
		start := time.Now()
		addrs, err := p.cfg.resolver().LookupIPAddr(ctx, p.host)
		t.DNS = time.Since(start)
		if err != nil {
			return nil, err
		}
		ips = ips[:0]
		for _, a := range addrs {
			s := a.IP.String()
			if a.Zone != "" {
				s += "%" + a.Zone
			}
			ips = append(ips, s)
		}
		if len(ips) == 0 {
			return nil, &net.DNSError{Err: "no addresses", Name: p.host, IsNotFound: true}
		}
	}
	d := p.cfg.dialer()
	start := time.Now()
	defer func() { t.Connect = time.Since(start) }()
	var first error
	for _, ip := range ips {
		c, err := d.DialContext(ctx, "tcp", net.JoinHostPort(ip, p.port))
		if err == nil {
			return c, nil
		}
		if first == nil {
			first = err
		}
		if ctx.Err() != nil {
			break
		}
	}
	return nil, first
}

// handshakeSummary is the first half of an ok detail: what was attested.
func handshakeSummary(a *Attempt, ev *attest.Result) string {
	s := fmt.Sprintf("Attested handshake finished (TLS %s, nonce in the %s)", a.TLSVersion, nonceWhere(a.NonceStyle))
	if ev == nil {
		return s
	}
	s += fmt.Sprintf("; %s evidence %s", platformName(ev.Platform), ev.Verdict)
	if ev.Verdict != attest.Verified {
		s += " (not every value could be checked: see the evidence fields)"
	}
	return s
}

func nonceWhere(style string) string {
	if style == atls.SourceSNI {
		return "SNI"
	}
	return "ALPN entry"
}

func platformName(p string) string {
	switch p {
	case attest.PlatformSNP:
		return "SEV-SNP"
	case attest.PlatformTDX:
		return "TDX"
	case "":
		return "the"
	}
	return p
}

// versionCheck decides coordinator_version_mismatch. When an ALPN-style
// handshake failed the way a Coordinator that reads the nonce only from the
// SNI makes it fail — internal_error because the SNI (the dial authority)
// is not base64, or evidence bound to an empty nonce because there was no
// SNI — it probes once more with the nonce in the SNI. Only evidence from
// that handshake that binds its SNI nonce shows an older Coordinator: then
// decided is true and v is coordinator_version_mismatch. Evidence that binds
// no nonce of the probe's is replayed or mis-issued, whatever else the
// Coordinator does like an old one: decided is true and v is attest's
// verdict on that binding (report_data_mismatch). Otherwise (no evidence,
// or evidence that failed before its report data could be trusted) decided
// is false and v.Detail is a sentence to append to the first attempt's
// verdict. second is nil when no second probe was warranted.
func (p *prober) versionCheck(ctx context.Context, first *Attempt) (second *Attempt, v verdict.Finding, decided bool, err error) {
	if !oldCoordinatorSymptom(first) {
		return nil, v, false, nil
	}
	second, err = p.attempt(ctx, atls.NonceSNI, "")
	if err != nil {
		return nil, v, false, err
	}
	if second.Evidence == nil {
		return second, verdict.Finding{Mode: first.Mode, Detail: fmt.Sprintf(
			"Retrying with the nonce in the SNI, as older CLIs send it, failed too (%s), so the Coordinator is not merely older than the CLI.", second.Mode)}, false, nil
	}
	how := fmt.Sprintf("answered a ClientHello carrying the nonce in the ALPN entry (SNI %q) with a plaintext internal_error alert", first.ServerName)
	if first.Mode == failure.ReportDataMismatch {
		how = "sent evidence not bound to the nonce in the ALPN entry of a ClientHello without SNI"
	}
	b, retry, why := p.binding(ctx, second)
	switch b {
	case bound:
		if first.Mode == failure.ReportDataMismatch {
			how += " (an older Coordinator reads the missing SNI as an empty nonce)"
		}
		detail := fmt.Sprintf("The Coordinator %s, but issued a valid attestation document for the nonce in the SNI: it reads the nonce only from the SNI, so it predates this CLI. Use the Contrast CLI release that matches the Coordinator, or upgrade the Coordinator.", how)
		if second.Mode != failure.OK {
			detail += fmt.Sprintf(" With the nonce in the SNI the probe then found %s: %s", second.Mode, second.Detail)
		}
		return second, verdict.Finding{Mode: failure.CoordinatorVersionMismatch, Detail: detail}, true, nil
	case unbound:
		detail := fmt.Sprintf("The Coordinator %s, as one that reads the nonce only from the SNI does, but the evidence it then sent for the nonce in the SNI is not bound to that nonce either: %s. "+
			"An older Coordinator binds the SNI nonce; evidence bound to no nonce the client sent is replayed or mis-issued, so this Coordinator is not merely older. Do not trust it until its issuer is fixed.",
			how, sentence(why))
		// attest named the binding's failure; the detail says what it means
		// for the version question.
		return second, verdict.Finding{Mode: retry.Mode, Detail: detail}, true, nil
	}
	return second, verdict.Finding{Mode: first.Mode, Detail: fmt.Sprintf(
		"Retrying with the nonce in the SNI got a certificate whose evidence failed before its report data could be trusted (%s), so the probe cannot tell an older Coordinator from one that replays evidence.", why)}, false, nil
}

// nonceBinding says whether evidence binds a handshake's nonce.
type nonceBinding int

const (
	// bindingUnknown: the evidence failed before its report data could be
	// trusted (signature, chain, format), or there was none.
	bindingUnknown nonceBinding = iota
	bound
	unbound
)

// binding checks whether a's evidence binds a's own nonce: REPORT_DATA =
// SHA-512(SPKI of the certificate key || nonce), in evidence whose
// signature and chain verify. Reference values and policy hashes play no
// part, and a certificate outside its validity is judged at the
// Coordinator's clock, so nothing else can hide the answer. check is that
// check's result (attest's report_data_mismatch for unbound evidence); why
// describes an unbound or unknown result.
func (p *prober) binding(ctx context.Context, a *Attempt) (b nonceBinding, check attest.Result, why string) {
	ev := a.Evidence
	if ev == nil || a.cert == nil {
		return bindingUnknown, check, "no evidence"
	}
	if ev.Mode == failure.OK {
		// The full check, report data included, passed.
		return bound, *ev, ""
	}
	nonce, err := hex.DecodeString(a.Nonce)
	if err != nil {
		return bindingUnknown, check, err.Error()
	}
	opts := p.cfg.Attest
	opts.Reference, opts.PolicyHashes = nil, nil
	opts.Nonce, opts.SPKI = nonce, nil
	if ev.Mode == failure.ClockSkew {
		issued := a.cert.NotBefore.Add(atls.CertificateMargin)
		opts.Now = func() time.Time { return issued }
	}
	r := attest.CheckCertificate(ctx, a.cert, opts)
	switch r.Mode {
	case failure.OK:
		return bound, r, ""
	case failure.ReportDataMismatch:
		return unbound, r, r.Detail
	}
	return bindingUnknown, r, fmt.Sprintf("%s: %s", r.Mode, r.Detail)
}

// oldCoordinatorSymptom reports whether an ALPN-style attempt failed the way
// only an SNI-reading (older) Coordinator makes it fail.
func oldCoordinatorSymptom(a *Attempt) bool {
	if a.NonceStyle != atls.SourceALPN {
		return false
	}
	switch a.Mode {
	case failure.IssuerError:
		return !isSNINonce(a.ServerName)
	case failure.ReportDataMismatch:
		return a.ServerName == ""
	}
	return false
}

// isSNINonce reports whether an older Coordinator would read sni as a
// nonce: standard base64 of NonceSize bytes.
func isSNINonce(sni string) bool {
	n, err := atls.NonceFromSNI(sni)
	return err == nil && len(n) == atls.NonceSize
}
