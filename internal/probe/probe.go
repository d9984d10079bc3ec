package probe

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/ccproxy-dev/ccproxy/attest"
	"github.com/ccproxy-dev/ccproxy/internal/atls"
	"github.com/ccproxy-dev/ccproxy/internal/failure"
)

// DefaultTimeout bounds one probe connection (dial, handshake, user API): the
// Contrast CLI's own connect timeout.
const DefaultTimeout = 30 * time.Second

// NonceMode says where Run puts the client nonce.
type NonceMode int

const (
	// NonceAuto is what the current CLI does (NonceALPN) and, when the
	// Coordinator cannot handle that, tries the older CLI's way (NonceSNI)
	// to tell an old Coordinator from a broken one.
	NonceAuto NonceMode = iota
	// NonceALPN sends only what the current CLI sends: an atls:v1:nonce ALPN
	// entry, with the dial authority as SNI.
	NonceALPN
	// NonceSNI sends only what an older CLI sends: the base64 nonce as SNI.
	NonceSNI
)

func (m NonceMode) String() string {
	switch m {
	case NonceAuto:
		return "auto"
	case NonceALPN:
		return atls.SourceALPN
	case NonceSNI:
		return atls.SourceSNI
	}
	return "NonceMode(" + strconv.Itoa(int(m)) + ")"
}

// ParseNonceMode reads "auto", "alpn" or "sni".
func ParseNonceMode(s string) (NonceMode, error) {
	for _, m := range []NonceMode{NonceAuto, NonceALPN, NonceSNI} {
		if s == m.String() {
			return m, nil
		}
	}
	return NonceAuto, fmt.Errorf("%q is not auto, alpn or sni", s)
}

// Config configures a probe. The zero value probes like the current CLI,
// verifies evidence online against the vendors' roots without reference
// values, and calls the user API.
type Config struct {
	// Attest is what evidence is checked against. Nonce and SPKI are set
	// per handshake; Now is this host's clock.
	Attest attest.Options
	// Manifest is the local manifest.json the Coordinator's latest manifest
	// must equal byte for byte (as `contrast verify` requires); nil takes
	// Attest.Reference.Raw, and without either nothing is compared.
	Manifest []byte
	// NonceIn selects the nonce placement; see NonceMode.
	NonceIn NonceMode
	// ServerName is the SNI of an ALPN-style ClientHello. Empty means the
	// host of the address unless it is an IP literal, which is what the CLI's
	// gRPC dial authority gives.
	ServerName string
	// MaxVersion caps the TLS version (tls.VersionTLS12 or
	// tls.VersionTLS13); 0 means TLS 1.3, as the CLI negotiates.
	MaxVersion uint16
	// Timeout bounds each connection: dial, handshake and user API call.
	// 0 means DefaultTimeout.
	Timeout time.Duration
	// HandshakeOnly skips the user API: the attested handshake is the whole
	// probe (the relay's refinement needs no more).
	HandshakeOnly bool
	// Resolver resolves the Coordinator's name; nil means net.DefaultResolver.
	Resolver *net.Resolver
	// Dialer opens the TCP connection; nil means a zero net.Dialer.
	Dialer *net.Dialer
}

func (c Config) timeout() time.Duration {
	if c.Timeout > 0 {
		return c.Timeout
	}
	return DefaultTimeout
}

func (c Config) maxVersion() uint16 {
	if c.MaxVersion != 0 {
		return c.MaxVersion
	}
	return tls.VersionTLS13
}

func (c Config) resolver() *net.Resolver {
	if c.Resolver != nil {
		return c.Resolver
	}
	return net.DefaultResolver
}

func (c Config) dialer() *net.Dialer {
	if c.Dialer != nil {
		return c.Dialer
	}
	return &net.Dialer{}
}

func (c Config) manifest() []byte {
	if c.Manifest != nil {
		return c.Manifest
	}
	if c.Attest.Reference != nil {
		return c.Attest.Reference.Raw
	}
	return nil
}

// Validate reports configuration errors: an invalid nonce mode or TLS
// version, and invalid attest options (roots that do not parse, policy
// hashes of the wrong length).
func (c Config) Validate() error {
	var errs []error
	if c.NonceIn < NonceAuto || c.NonceIn > NonceSNI {
		errs = append(errs, fmt.Errorf("nonce mode %d is not auto, alpn or sni", int(c.NonceIn)))
	}
	if c.MaxVersion != 0 && c.MaxVersion != tls.VersionTLS12 && c.MaxVersion != tls.VersionTLS13 {
		errs = append(errs, fmt.Errorf("TLS max version %#04x is not 1.2 or 1.3", c.MaxVersion))
	}
	if err := c.Attest.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Timings are the durations of a connection's phases; zero means the phase
// did not happen (no DNS for an IP literal, no user API after a failure).
type Timings struct {
	DNS     time.Duration
	Connect time.Duration
	// FirstByte is the time from the ClientHello to the Coordinator's first
	// byte: the Coordinator builds its certificate, and so calls its issuer,
	// in between, so this is the issuer's latency.
	FirstByte time.Duration
	// Handshake is the whole TLS handshake, including FirstByte and the
	// client's evidence check.
	Handshake time.Duration
	UserAPI   time.Duration
}

// MarshalJSON writes milliseconds, omitting phases that did not happen.
func (t Timings) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		DNS       *float64 `json:"dns,omitempty"`
		Connect   *float64 `json:"connect,omitempty"`
		FirstByte *float64 `json:"first_byte,omitempty"`
		Handshake *float64 `json:"handshake,omitempty"`
		UserAPI   *float64 `json:"user_api,omitempty"`
	}{msPtr(t.DNS), msPtr(t.Connect), msPtr(t.FirstByte), msPtr(t.Handshake), msPtr(t.UserAPI)})
}

func msPtr(d time.Duration) *float64 {
	if d <= 0 {
		return nil
	}
	v := ms(d)
	return &v
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// Report is the outcome of Run.
type Report struct {
	// Coordinator is the address as given.
	Coordinator string `json:"coordinator"`
	// Mode is the contract's failure mode; ok only when the attested
	// handshake succeeded and (unless HandshakeOnly) the user API reported a
	// Coordinator holding the local manifest (or any manifest, without one).
	Mode   failure.Mode `json:"failure_mode"`
	Detail string       `json:"failure_detail"`
	// NonceStyle is where the deciding connection put its nonce: alpn or sni.
	NonceStyle string `json:"nonce_style"`
	// TLSVersion is the deciding connection's negotiated version, e.g. "1.3".
	TLSVersion string `json:"tls_version,omitempty"`
	// ClockOffset is the Coordinator's clock minus this host's, from its
	// certificate (issued at NotBefore + 2 h); nil when no certificate came.
	ClockOffset   *time.Duration `json:"-"`
	ClockOffsetMS *int64         `json:"clock_offset_ms,omitempty"`
	// Timings are the deciding connection's.
	Timings  Timings        `json:"timings_ms"`
	Evidence *attest.Result `json:"evidence,omitempty"`
	// State is what the user API said, when it was called.
	State *State `json:"state,omitempty"`
	// Attempts are every connection made, in order (two when NonceAuto
	// retried with the SNI nonce).
	Attempts []*Attempt `json:"attempts"`

	decided *Attempt
}

// Run probes the Coordinator at addr (host:port). The error is only for
// invalid input; every failure of the Coordinator or the network is a
// Report whose Mode names it.
func Run(ctx context.Context, addr string, cfg Config) (*Report, error) {
	host, port, err := splitAddr(addr)
	if err != nil {
		return nil, err
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	p := &prober{cfg: cfg, host: host, port: port, api: !cfg.HandshakeOnly}
	sni := cfg.ServerName
	if sni == "" && net.ParseIP(host) == nil {
		sni = host
	}

	style := atls.NonceALPN
	if cfg.NonceIn == NonceSNI {
		style = atls.NonceSNI
	}
	first, err := p.attempt(ctx, style, sni)
	if err != nil {
		return nil, err
	}
	rep := &Report{Coordinator: addr, Attempts: []*Attempt{first}}
	decided := first
	if cfg.NonceIn == NonceAuto {
		if second, v, ok, err := p.versionCheck(ctx, first); err != nil {
			return nil, err
		} else if second != nil {
			rep.Attempts = append(rep.Attempts, second)
			if ok {
				decided = second
				rep.Mode, rep.Detail = v.Mode, v.Detail
			} else {
				rep.Mode, rep.Detail = first.Mode, sentence(first.Detail)+" "+v.Detail
			}
		}
	}
	if rep.Mode == "" {
		rep.Mode, rep.Detail = decided.Mode, decided.Detail
	}
	if rep.Mode == failure.ClockSkew {
		rep.Detail = sentence(rep.Detail) + " Compared: the Coordinator's clock when it issued the certificate (NotBefore + 2 h) with this machine's clock, which is what a Contrast CLI on this machine sees."
	}
	rep.decided = decided
	rep.NonceStyle = decided.NonceStyle
	rep.TLSVersion = decided.TLSVersion
	rep.Timings = decided.Timings
	rep.Evidence = decided.Evidence
	rep.State = decided.State
	if ev := decided.Evidence; ev != nil && ev.ClockOffset != nil {
		off := *ev.ClockOffset
		msv := off.Milliseconds()
		rep.ClockOffset, rep.ClockOffsetMS = &off, &msv
	}
	return rep, nil
}

// sentence ends s with a full stop, so another sentence can follow.
func sentence(s string) string {
	s = strings.TrimSpace(s)
	if s == "" || strings.HasSuffix(s, ".") {
		return s
	}
	return s + "."
}

func splitAddr(addr string) (host, port string, err error) {
	host, port, err = net.SplitHostPort(addr)
	if err != nil {
		return "", "", fmt.Errorf("coordinator address %q is not host:port: %w", addr, err)
	}
	if host == "" {
		return "", "", fmt.Errorf("coordinator address %q has no host", addr)
	}
	if n, err := strconv.Atoi(port); err != nil || n <= 0 || n > 65535 {
		return "", "", fmt.Errorf("coordinator address %q has no valid port", addr)
	}
	return host, port, nil
}
