package contrastcli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"google.golang.org/grpc"

	"github.com/ccproxy-dev/ccproxy/internal/atls"
	"github.com/ccproxy-dev/ccproxy/internal/userapi"
)

// ConnectTimeout is the CLI's minimum connect timeout (constants.ATLSClientTimeout).
const ConnectTimeout = 30 * time.Second

// Options configure one CLI run. Manifest is required.
type Options struct {
	// Manifest is the local manifest.json: its reference values become the
	// validators, its Coordinator policy entry the expected policy hash, and
	// Verify requires the Coordinator's latest manifest to equal it.
	Manifest []byte
	// PolicyHash overrides the manifest's Coordinator policy hash (32 bytes),
	// as older CLIs' --coordinator-policy-hash did.
	PolicyHash []byte
	// SNPRootsPEM and TDXRootsPEM replace the vendors' roots (ARK+ASK, Intel
	// SGX root). nil uses the roots embedded in go-sev-guest / go-tdx-guest.
	SNPRootsPEM, TDXRootsPEM []byte
	// Online lets verification fetch certificates, CRLs and collateral from
	// AMD and Intel, as the real CLI does. The zero value never fetches.
	Online bool
	// NonceStyle is how the nonce is sent: atls.NonceALPN (newer CLI, the
	// zero value) or atls.NonceSNI (older CLI).
	NonceStyle atls.NonceStyle
	// Authority overrides the dial authority, which the newer CLI sends as
	// SNI: `contrast set -c localhost:1313` sends "localhost".
	Authority string
	// MaxTLS12 caps the client at TLS 1.2, so the server certificate crosses
	// the wire in plaintext.
	MaxTLS12 bool
	// Legacy calls the user API under its older name /userapi.UserAPI/.
	Legacy bool
	// Timeout bounds Verify; zero means no bound beyond ctx.
	Timeout time.Duration
	// Dialer opens the TCP connection; nil means a net.Dialer.
	Dialer func(ctx context.Context, addr string) (net.Conn, error)
}

// Result is what a Verify run saw, also on failure.
type Result struct {
	// Attempts are the handshakes gRPC made, oldest first.
	Attempts []Attempt
	// Manifests, Policies, RootCA and MeshCA are the GetManifests answer.
	Manifests, Policies [][]byte
	RootCA, MeshCA      []byte
}

// Client is a gRPC connection to a Coordinator's user API over aTLS.
type Client struct {
	conn  *grpc.ClientConn
	creds *creds
	opts  Options
}

// Dial prepares a connection to addr like the CLI's dialer: nothing is sent
// until the first call. It fails only for bad options (manifest, roots).
func Dial(_ context.Context, addr string, opts Options) (*Client, error) {
	m, err := parseManifest(opts.Manifest)
	if err != nil {
		return nil, err
	}
	validators, coordinatorHashes, err := validatorsFor(m, opts)
	if err != nil {
		return nil, err
	}
	c := &creds{style: opts.NonceStyle, validators: validators, coordinatorHashes: coordinatorHashes, maxTLS12: opts.MaxTLS12}
	dial := opts.Dialer
	if dial == nil {
		var d net.Dialer
		dial = func(ctx context.Context, addr string) (net.Conn, error) { return d.DialContext(ctx, "tcp", addr) }
	}
	dialOpts := []grpc.DialOption{
		grpc.WithContextDialer(dial),
		grpc.WithTransportCredentials(c),
		grpc.WithConnectParams(grpc.ConnectParams{MinConnectTimeout: ConnectTimeout}),
	}
	if opts.Authority != "" {
		dialOpts = append(dialOpts, grpc.WithAuthority(opts.Authority))
	}
	conn, err := grpc.NewClient(addr, dialOpts...)
	if err != nil {
		return nil, fmt.Errorf("dialing coordinator: %w", err)
	}
	return &Client{conn: conn, creds: c, opts: opts}, nil
}

// validatorsFor is what `contrast set` and `verify` do before they dial:
// validate the manifest, then build the validators of its era. The newest
// CLI checks the Coordinator policy after a validator passed
// (coordinatorHashes); older ones give it to the libraries.
func validatorsFor(m *manifest, opts Options) ([]validator, [][]byte, error) {
	if err := m.validate(); err != nil {
		return nil, nil, fmt.Errorf("validating manifest: %w", err)
	}
	var policyHash []byte
	var coordinatorHashes [][]byte
	switch {
	case m.newest() && opts.PolicyHash != nil:
		coordinatorHashes = [][]byte{opts.PolicyHash}
	case m.newest():
		coordinatorHashes = m.coordinatorPolicyHashes()
	case opts.PolicyHash != nil:
		policyHash = opts.PolicyHash
	default:
		var err error
		if policyHash, err = m.coordinatorPolicyHash(); err != nil {
			return nil, nil, fmt.Errorf("getting coordinator policy hash: %w", err)
		}
	}
	validators, err := validatorsFromManifest(m, policyHash, opts)
	if err != nil {
		return nil, nil, fmt.Errorf("getting validators: %w", err)
	}
	return validators, coordinatorHashes, nil
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// Attempts returns the handshakes made so far, oldest first.
func (c *Client) Attempts() []Attempt { return c.creds.Attempts() }

// GetManifests calls the user API's GetManifests; errors are wrapped as the
// SDK wraps them ("getting manifests: rpc error: ...").
func (c *Client) GetManifests(ctx context.Context) (*userapi.GetManifestsResponse, error) {
	var resp *userapi.GetManifestsResponse
	var err error
	if c.opts.Legacy {
		resp, err = userapi.NewLegacyClient(c.conn).GetManifests(ctx, &userapi.GetManifestsRequest{})
	} else {
		resp, err = userapi.NewUserAPIClient(c.conn).GetManifests(ctx, &userapi.GetManifestsRequest{})
	}
	if err != nil {
		return nil, fmt.Errorf("getting manifests: %w", err)
	}
	return resp, nil
}

// Verify does what `contrast verify` does against addr: one attested
// connection, GetManifests, and a byte-for-byte comparison of the latest
// manifest with opts.Manifest. The error's text is what a user of the CLI
// reads, e.g.
//
//	getting manifests: rpc error: code = Unavailable desc = connection error: desc =
//	"transport: authentication handshake failed: remote error: tls: internal error"
func Verify(ctx context.Context, addr string, opts Options) (*Result, error) {
	if opts.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, opts.Timeout)
		defer cancel()
	}
	c, err := Dial(ctx, addr, opts)
	if err != nil {
		return &Result{}, err
	}
	defer c.Close()
	resp, err := c.GetManifests(ctx)
	res := &Result{Attempts: c.Attempts()}
	if err != nil {
		return res, err
	}
	res.Manifests, res.Policies = resp.GetManifests(), resp.GetPolicies()
	res.RootCA, res.MeshCA = resp.GetRootCA(), resp.GetMeshCA()
	if len(res.Manifests) == 0 {
		return res, errors.New("manifest history is empty")
	}
	if !bytes.Equal(res.Manifests[len(res.Manifests)-1], opts.Manifest) {
		return res, errors.New("active manifest does not match expected manifest")
	}
	return res, nil
}

// SetManifest calls SetManifest with manifest and no policies, as `contrast
// set` does after generating them (errors wrapped like the CLI's).
func (c *Client) SetManifest(ctx context.Context, manifest []byte, policies ...[]byte) error {
	req := &userapi.SetManifestRequest{Manifest: manifest, Policies: policies}
	var err error
	if c.opts.Legacy {
		_, err = userapi.NewLegacyClient(c.conn).SetManifest(ctx, req)
	} else {
		_, err = userapi.NewUserAPIClient(c.conn).SetManifest(ctx, req)
	}
	if err != nil {
		return fmt.Errorf("setting manifest: %w", err)
	}
	return nil
}

// Recover calls Recover (the CLI's `contrast recover`; newer API only).
func (c *Client) Recover(ctx context.Context) error {
	if _, err := userapi.NewUserAPIClient(c.conn).Recover(ctx, &userapi.RecoverRequest{}); err != nil {
		return fmt.Errorf("recovering coordinator: %w", err)
	}
	return nil
}
