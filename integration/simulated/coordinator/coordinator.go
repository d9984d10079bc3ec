// Package coordinator is a simulated Contrast Coordinator: the user API on
// port 1313 over Contrast's attested TLS, byte for byte, with evidence signed
// by attesttest's fake AMD and Intel roots, and with knobs that make it fail
// the way Coordinators and load balancers fail in the field (see Fault).
//
//	c, _ := coordinator.New(coordinator.Config{Platform: "snp"})
//	ln, _ := net.Listen("tcp", "127.0.0.1:0")
//	go c.Serve(ctx, ln)
//	c.SetFault(coordinator.FaultIssuerError) // the next handshakes fail with internal_error
//
// A client needs c.Manifest() as its manifest.json and
// c.Authority().SNPRootsPEM() (or TDXRootsPEM) as trusted roots.
package coordinator

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"google.golang.org/grpc"

	"github.com/ccproxy-dev/ccproxy/attest/attesttest"
	"github.com/ccproxy-dev/ccproxy/internal/atls"
	"github.com/ccproxy-dev/ccproxy/internal/userapi"
)

// Platforms a Coordinator can run on.
const (
	PlatformSNP = "snp"
	PlatformTDX = "tdx"
)

// Defaults, taken from Contrast where it has them.
const (
	// DefaultHandshakeTimeout is Contrast's ATLSServerTimeout.
	DefaultHandshakeTimeout = 25 * time.Second
	// DefaultIssuerDelay is FaultIssuerSlow's delay: longer than the server's
	// handshake timeout, so a client that waits long enough sees the
	// Coordinator give up with internal_error, as a stuck issuer does.
	DefaultIssuerDelay = 40 * time.Second
	// ClockSkewAhead is how far FaultClockSkew puts the Coordinator's clock
	// ahead: beyond the certificate's 2-hour margin.
	ClockSkewAhead = 3 * time.Hour
)

// Config configures a Coordinator. The zero value is a healthy SNP
// Coordinator with a fresh attesttest.Authority.
type Config struct {
	// Authority signs evidence; nil means a new one.
	Authority *attesttest.Authority
	// Platform is PlatformSNP (default) or PlatformTDX.
	Platform string
	// Manifest is the manifest the Coordinator holds at start; nil means
	// Authority.ManifestJSON(Platform), which validates the default evidence
	// (Authority.SeedManifestJSON with VCPUs).
	Manifest []byte
	// VCPUs, on SNP, runs the Coordinator's VM with that many vCPUs: its
	// MEASUREMENT is the default 1-vCPU seed extended by AP VMSA pages, as
	// the newest manifests (seed and APEIP) expect.
	VCPUs int
	// Policies are returned by GetManifests next to the manifests.
	Policies [][]byte
	// Fault is the initial fault (SetFault changes it).
	Fault Fault
	// IssuerDelay is FaultIssuerSlow's delay; 0 means DefaultIssuerDelay.
	IssuerDelay time.Duration
	// ClockSkew shifts the Coordinator's clock in every state (e.g. time.Hour
	// to show a tolerated skew). FaultClockSkew overrides it with ClockSkewAhead.
	ClockSkew time.Duration
	// HandshakeTimeout bounds each server handshake; 0 means DefaultHandshakeTimeout.
	HandshakeTimeout time.Duration
	// Logger receives one line per failed handshake and API call; nil discards.
	Logger *slog.Logger
}

// Coordinator is a simulated Contrast Coordinator. Its methods are safe for
// concurrent use; faults and clock changes apply to new connections.
type Coordinator struct {
	auth             *attesttest.Authority
	platform         string
	vcpus            int
	manifest         []byte
	key              *ecdsa.PrivateKey
	spki             []byte
	tlsConfig        *tls.Config
	handshakeTimeout time.Duration
	log              *slog.Logger
	rootCA, meshCA   []byte

	mu          sync.Mutex
	fault       Fault
	connFaults  []Fault // SetFaultSequence: the next connections' faults, in order
	skew        time.Duration
	issuerDelay time.Duration
	manifests   [][]byte
	policies    [][]byte
	addr        string
}

// New builds a Coordinator; it does not listen yet (see Serve).
func New(cfg Config) (*Coordinator, error) {
	platform := cfg.Platform
	if platform == "" {
		platform = PlatformSNP
	}
	if platform != PlatformSNP && platform != PlatformTDX {
		return nil, fmt.Errorf("coordinator: unknown platform %q (want %q or %q)", cfg.Platform, PlatformSNP, PlatformTDX)
	}
	if _, err := ParseFault(string(cfg.Fault)); err != nil {
		return nil, fmt.Errorf("coordinator: %w", err)
	}
	auth := cfg.Authority
	if auth == nil {
		var err error
		if auth, err = attesttest.NewAuthority(); err != nil {
			return nil, fmt.Errorf("coordinator: %w", err)
		}
	}
	if cfg.VCPUs < 0 || cfg.VCPUs > 0 && platform != PlatformSNP {
		return nil, fmt.Errorf("coordinator: VCPUs %d: only an SNP Coordinator has a vCPU-dependent measurement", cfg.VCPUs)
	}
	mnfst := cfg.Manifest
	if mnfst == nil {
		mnfst = auth.ManifestJSON(platform)
		if cfg.VCPUs > 0 {
			mnfst = auth.SeedManifestJSON(platform)
		}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("coordinator: generating key: %w", err)
	}
	spki, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("coordinator: %w", err)
	}
	rootCA, meshCA, err := newCAs()
	if err != nil {
		return nil, fmt.Errorf("coordinator: %w", err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	c := &Coordinator{
		auth:             auth,
		platform:         platform,
		vcpus:            cfg.VCPUs,
		manifest:         mnfst,
		key:              key,
		spki:             spki,
		handshakeTimeout: orDefault(cfg.HandshakeTimeout, DefaultHandshakeTimeout),
		log:              log,
		rootCA:           rootCA,
		meshCA:           meshCA,
		fault:            cfg.Fault,
		skew:             cfg.ClockSkew,
		issuerDelay:      orDefault(cfg.IssuerDelay, DefaultIssuerDelay),
		manifests:        [][]byte{mnfst},
		policies:         cfg.Policies,
	}
	iss := &issuer{c: c}
	current, err := atls.ServerConfig(iss, atls.ServerOptions{Now: c.now, Key: key})
	if err != nil {
		return nil, fmt.Errorf("coordinator: %w", err)
	}
	old, err := atls.ServerConfig(replaying(iss, spki), atls.ServerOptions{SNIOnly: true, Now: c.now, Key: key})
	if err != nil {
		return nil, fmt.Errorf("coordinator: %w", err)
	}
	// One key and issuer, two nonce rules: the connection's fault picks.
	c.tlsConfig = &tls.Config{
		GetConfigForClient: func(chi *tls.ClientHelloInfo) (*tls.Config, error) {
			if f := faultFrom(chi.Context()); f == FaultOldCoordinator || f == FaultReplayedEvidence {
				return old.GetConfigForClient(chi)
			}
			return current.GetConfigForClient(chi)
		},
	}
	return c, nil
}

// replayedNonce is the nonce FaultReplayedEvidence's evidence is bound to:
// fixed, as if captured from an earlier handshake.
func replayedNonce() []byte {
	h := sha256.Sum256([]byte("ccproxy simulated coordinator: a nonce from an earlier handshake"))
	return h[:]
}

// replaying wraps iss so that under FaultReplayedEvidence the evidence binds
// replayedNonce instead of the client's nonce (and is otherwise healthy).
func replaying(iss atls.Issuer, spki []byte) atls.Issuer {
	return atls.IssuerFunc(func(ctx context.Context, reportData [64]byte) (asn1.ObjectIdentifier, []byte, error) {
		if faultFrom(ctx) == FaultReplayedEvidence {
			reportData = atls.ReportData(spki, replayedNonce())
		}
		return iss.Issue(ctx, reportData)
	})
}

func orDefault(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// Authority returns the authority that signs this Coordinator's evidence;
// clients trust its roots.
func (c *Coordinator) Authority() *attesttest.Authority { return c.auth }

// Platform returns PlatformSNP or PlatformTDX.
func (c *Coordinator) Platform() string { return c.platform }

// Manifest returns the manifest the Coordinator was created with, i.e. the
// manifest.json a client should verify against.
func (c *Coordinator) Manifest() []byte { return append([]byte(nil), c.manifest...) }

// Addr returns the address Serve listens on, "" before Serve is called.
func (c *Coordinator) Addr() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.addr
}

// Fault returns the current fault.
func (c *Coordinator) Fault() Fault {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.fault
}

// SetFault switches the fault for connections accepted from now on (and for
// user API calls from now on).
func (c *Coordinator) SetFault(f Fault) {
	c.mu.Lock()
	c.fault = f
	c.mu.Unlock()
}

// SetFaultSequence gives the next len(seq) connections accepted the faults
// of seq, one each and in order; connections after them get SetFault's
// fault again. It reproduces a failure that changes between a client's
// retries: a load balancer that drops the first attempts, then a slow
// issuer (SetFault(FaultIssuerSlow) with SetFaultSequence(FaultLBClose,
// FaultLBClose)). Only connection faults apply per connection; user API
// faults follow SetFault. SetFaultSequence() clears a sequence.
func (c *Coordinator) SetFaultSequence(seq ...Fault) {
	c.mu.Lock()
	c.connFaults = append([]Fault(nil), seq...)
	c.mu.Unlock()
}

// connFault is the fault of a connection accepted now: the sequence's next,
// or the current fault.
func (c *Coordinator) connFault() Fault {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.connFaults) > 0 {
		f := c.connFaults[0]
		c.connFaults = c.connFaults[1:]
		return f
	}
	return c.fault
}

// SetClockSkew shifts the Coordinator's clock by d in every state but
// FaultClockSkew (which uses ClockSkewAhead).
func (c *Coordinator) SetClockSkew(d time.Duration) {
	c.mu.Lock()
	c.skew = d
	c.mu.Unlock()
}

// SetIssuerDelay sets FaultIssuerSlow's delay.
func (c *Coordinator) SetIssuerDelay(d time.Duration) {
	c.mu.Lock()
	c.issuerDelay = d
	c.mu.Unlock()
}

// now is the Coordinator's clock.
func (c *Coordinator) now() time.Time {
	c.mu.Lock()
	skew := c.skew
	if c.fault == FaultClockSkew {
		skew = ClockSkewAhead
	}
	c.mu.Unlock()
	return time.Now().Add(skew)
}

func (c *Coordinator) getIssuerDelay() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.issuerDelay
}

// Serve accepts connections on ln until ctx ends or ln fails, and serves the
// user API on them (current and legacy service names). It closes ln, stops
// all connections and waits for its goroutines before returning; it returns
// nil when stopped through ctx or by closing ln. Call it once per listener.
func (c *Coordinator) Serve(ctx context.Context, ln net.Listener) error {
	// Cancelled on every return, so handshakes stuck in a slow issuer end
	// even when Serve stops because ln failed.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	c.mu.Lock()
	c.addr = ln.Addr().String()
	c.mu.Unlock()

	queue := newConnQueue(ln.Addr())
	gs := grpc.NewServer(grpc.Creds(&serverCreds{c: c, ctx: ctx}))
	api := &userAPI{c: c}
	gs.RegisterService(&userapi.UserAPI_ServiceDesc, api)
	gs.RegisterService(userapi.LegacyServiceDesc(), api)

	var wg sync.WaitGroup
	wg.Go(func() { _ = gs.Serve(queue) })
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()

	var err error
	for {
		conn, aerr := ln.Accept()
		if aerr != nil {
			if ctx.Err() == nil && !errors.Is(aerr, net.ErrClosed) {
				err = fmt.Errorf("coordinator: accept: %w", aerr)
			}
			break
		}
		wg.Go(func() { c.handle(ctx, conn, queue) })
	}
	cancel()
	ln.Close()
	queue.Close()
	gs.Stop()
	wg.Wait()
	return err
}

// handle applies the faults that act before TLS and hands every other
// connection, tagged with the fault it was accepted under, to gRPC.
func (c *Coordinator) handle(ctx context.Context, conn net.Conn, queue *connQueue) {
	f := c.connFault()
	switch f {
	case FaultLBClose, FaultLBReset, FaultNotTLS:
		stop := context.AfterFunc(ctx, func() { conn.Close() })
		defer stop()
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		hello := readRecord(conn)
		switch f {
		case FaultLBReset:
			resetConn(conn)
		case FaultNotTLS:
			_, _ = io.WriteString(conn, httpBadRequest)
		}
		c.log.Debug("connection ended by fault", "fault", f.String(), "peer", conn.RemoteAddr().String(), "hello_bytes", len(hello))
	default:
		queue.push(&faultConn{Conn: conn, fault: f})
	}
}

// httpBadRequest is what an HTTP/1.1 server (Go's net/http) answers to bytes
// that are not HTTP, such as a ClientHello.
const httpBadRequest = "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n400 Bad Request"

// readRecord reads one TLS record (normally the whole ClientHello), or what
// arrives before an error.
func readRecord(conn net.Conn) []byte {
	hdr := make([]byte, 5)
	if _, err := io.ReadFull(conn, hdr); err != nil {
		return nil
	}
	body := make([]byte, int(hdr[3])<<8|int(hdr[4]))
	n, _ := io.ReadFull(conn, body)
	return append(hdr, body[:n]...)
}

// resetConn closes conn with a TCP RST instead of a FIN.
func resetConn(conn net.Conn) {
	var inner net.Conn = conn
	if fc, ok := conn.(*faultConn); ok {
		inner = fc.Conn
	}
	if tc, ok := inner.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	conn.Close()
}
