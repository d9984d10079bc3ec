package probe

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync/atomic"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/ccproxy-dev/ccproxy/internal/failure"
	"github.com/ccproxy-dev/ccproxy/internal/userapi"
	"github.com/ccproxy-dev/ccproxy/internal/verdict"
)

// State is what the Coordinator's user API reported.
type State struct {
	// Service is the gRPC service that answered: the current name or, for
	// older Coordinators, the legacy one.
	Service string `json:"service,omitempty"`
	// Manifests and Policies count the GetManifests answer.
	Manifests int `json:"manifests"`
	Policies  int `json:"policies"`
	// LatestManifestSHA256 identifies the Coordinator's active manifest.
	LatestManifestSHA256 string `json:"latest_manifest_sha256,omitempty"`
	// Compared says whether a local manifest.json was compared with it.
	Compared bool `json:"compared"`
	// Differences name what differs from the local manifest.json; empty
	// when it matches or was not compared.
	Differences []string `json:"differences,omitempty"`
	// Code and Message are the gRPC status of a failed call.
	Code    string `json:"code,omitempty"`
	Message string `json:"message,omitempty"`

	latest []byte
}

// getManifests calls GetManifests over the established attested connection
// conn: gRPC gets exactly this connection, so the answer comes from the
// Coordinator whose evidence was just checked. The current service name is
// tried first, then the legacy one. It closes conn.
func getManifests(ctx context.Context, conn net.Conn, tlsState tls.ConnectionState, authority string) (*State, error) {
	var used atomic.Bool
	dial := func(context.Context, string) (net.Conn, error) {
		if used.Swap(true) {
			// A second connection would not be the attested one.
			return nil, errors.New("the attested connection is gone; the probe does not dial another")
		}
		return conn, nil
	}
	cc, err := grpc.NewClient("passthrough:///"+authority,
		grpc.WithContextDialer(dial),
		grpc.WithTransportCredentials(established{info: credentials.TLSInfo{
			State:          tlsState,
			CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.PrivacyAndIntegrity},
		}}),
		grpc.WithAuthority(authority),
	)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("creating user API client: %w", err)
	}
	defer cc.Close()
	st := &State{Service: "edgelesssys.contrast.userapi.UserAPI"}
	resp, err := userapi.NewUserAPIClient(cc).GetManifests(ctx, &userapi.GetManifestsRequest{})
	if status.Code(err) == codes.Unimplemented {
		st.Service = userapi.LegacyServiceName
		resp, err = userapi.NewLegacyClient(cc).GetManifests(ctx, &userapi.GetManifestsRequest{})
	}
	if err != nil {
		if s, ok := status.FromError(err); ok {
			st.Code, st.Message = s.Code().String(), s.Message()
		}
		return st, fmt.Errorf("getting manifests: %w", err)
	}
	st.Manifests, st.Policies = len(resp.GetManifests()), len(resp.GetPolicies())
	if n := len(resp.GetManifests()); n > 0 {
		st.latest = resp.GetManifests()[n-1]
		sum := sha256.Sum256(st.latest)
		st.LatestManifestSHA256 = hex.EncodeToString(sum[:])
	}
	return st, nil
}

// endConn is the attested connection as gRPC gets it: it records how the
// Coordinator's side ended (a TLS close_notify or a FIN reads as io.EOF) if
// that happened before the probe closed the connection.
type endConn struct {
	net.Conn
	closed atomic.Bool
	end    atomic.Pointer[error]
}

func (c *endConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if err != nil && !c.closed.Load() && !errors.Is(err, net.ErrClosed) && !errors.Is(err, os.ErrDeadlineExceeded) {
		c.end.CompareAndSwap(nil, &err)
	}
	return n, err
}

func (c *endConn) Close() error {
	c.closed.Store(true)
	return c.Conn.Close()
}

// ended returns how the Coordinator ended the connection, nil if it did not
// before the probe closed it.
func (c *endConn) ended() error {
	if p := c.end.Load(); p != nil {
		return *p
	}
	return nil
}

// established are transport credentials for a connection whose attested
// handshake is already done: they hand it to gRPC unchanged.
type established struct{ info credentials.TLSInfo }

func (e established) ClientHandshake(_ context.Context, _ string, c net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return c, e.info, nil
}

func (established) ServerHandshake(net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, errors.New("probe: client credentials cannot serve")
}

func (established) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: "tls"}
}

func (e established) Clone() credentials.TransportCredentials { return e }

func (established) OverrideServerName(string) error { return nil }

// The user API's state messages, as Contrast's Coordinator has them
// (PROTOCOL.md, "User API on 1313"); matched in the gRPC status message.
const (
	// msgNeedsRecovery is the authority's and the state guard's
	// ErrNeedsRecovery: older Coordinators answer GetManifests with Internal
	// "syncing internal state: coordinator is in recovery mode", newer ones
	// with FailedPrecondition "coordinator is in recovery mode".
	msgNeedsRecovery = "coordinator is in recovery mode"
	// msgNoManifest (newer) and msgNoManifests (older) come with
	// FailedPrecondition.
	msgNoManifest  = "no manifest configured"
	msgNoManifests = "no manifests set"
)

// judgeState names the Coordinator's state from the GetManifests outcome:
// recovery mode, no manifest, a manifest that differs from local, an API
// error, or ok. broke says why the call failed below gRPC, nil when the
// connection was intact when the call returned: the upstream's end of the
// connection (io.EOF for a FIN), or the context's error when the probe's
// deadline passed. A call the connection's end left unanswered is an API
// error here; the wire names it (unanswered), and verdict.Decide prefers a
// failed wire to an API error. attested is the handshake's summary, the
// start of an ok detail.
func judgeState(st *State, apiErr, broke error, local []byte, attested string) verdict.Finding {
	if apiErr != nil {
		s, isStatus := status.FromError(errors.Unwrap(apiErr))
		if isStatus {
			msg := s.Message()
			switch {
			case strings.Contains(msg, msgNeedsRecovery):
				return verdict.Finding{Mode: failure.CoordinatorRecoveryMode, Detail: fmt.Sprintf(
					"The Coordinator is in recovery mode (GetManifests: %s %q): it restarted without its state and waits for `contrast recover` with the seed share owner key.", s.Code(), msg)}
			case s.Code() == codes.FailedPrecondition && (strings.Contains(msg, msgNoManifest) || strings.Contains(msg, msgNoManifests)):
				return verdict.Finding{Mode: failure.CoordinatorNoManifest, Detail: fmt.Sprintf(
					"The Coordinator has no manifest yet (GetManifests: %s %q): run `contrast set` with the deployment's manifest.", s.Code(), msg)}
			}
		}
		switch {
		case errors.Is(broke, context.DeadlineExceeded), errors.Is(broke, context.Canceled):
			why := "before the probe's deadline"
			if errors.Is(broke, context.Canceled) {
				why = "before the probe was cancelled"
			}
			return verdict.Finding{Mode: failure.CoordinatorAPIError, Detail: fmt.Sprintf(
				"%s, but the user API did not answer GetManifests %s (gRPC %s %q).", attested, why, s.Code(), s.Message())}
		case unanswered(apiErr, broke):
			return verdict.Finding{Mode: failure.CoordinatorAPIError, Detail: fmt.Sprintf(
				"%s, but the Coordinator ended the connection (%s) during GetManifests, before it answered (%v).", attested, endName(broke), apiErr)}
		}
		return verdict.Finding{Mode: failure.CoordinatorAPIError, Detail: fmt.Sprintf(
			"%s, but the user API answered GetManifests with gRPC code %s, message %q: no Coordinator state ccproxy knows (recovery mode, no manifest).%s",
			attested, s.Code(), s.Message(), apiErrorHint(s.Code()))}
	}
	if st.Manifests == 0 {
		return verdict.Finding{Mode: failure.CoordinatorNoManifest, Detail: "The Coordinator answered GetManifests with an empty manifest history (`contrast verify`: manifest history is empty): run `contrast set`."}
	}
	if local == nil {
		return verdict.Finding{Mode: failure.OK, Detail: fmt.Sprintf("%s; the Coordinator holds %s (latest sha256 %s). No local manifest.json was given, so it was not compared.",
			attested, plural(st.Manifests, "manifest"), st.LatestManifestSHA256)}
	}
	st.Compared = true
	st.Differences = diffManifests(local, st.latest)
	if len(st.Differences) == 0 {
		return verdict.Finding{Mode: failure.OK, Detail: fmt.Sprintf("%s; the Coordinator's active manifest (of %d) equals manifest.json.", attested, st.Manifests)}
	}
	return verdict.Finding{Mode: failure.ManifestMismatch, Detail: fmt.Sprintf("The Coordinator's active manifest (sha256 %s) differs from manifest.json: %s.",
		st.LatestManifestSHA256, strings.Join(st.Differences, "; "))}
}

// unanswered reports whether a failed user API call got no answer because
// the Coordinator ended the connection under it: gRPC's client makes up an
// Unavailable status for a broken transport, and the connection's end came
// from the Coordinator (broke), not from the probe's deadline.
func unanswered(apiErr, broke error) bool {
	if apiErr == nil || broke == nil || errors.Is(broke, context.DeadlineExceeded) || errors.Is(broke, context.Canceled) {
		return false
	}
	s, _ := status.FromError(errors.Unwrap(apiErr))
	return s.Code() == codes.Unavailable
}

// apiErrorHint is a sentence on where to look for a user API error.
func apiErrorHint(code codes.Code) string {
	switch code {
	case codes.Unimplemented:
		return " The service on this port speaks gRPC but is not the Contrast user API (neither service name is served): check the port and the Coordinator version."
	case codes.Internal, codes.Unknown:
		return " The Coordinator failed inside: its log (`kubectl logs` of the coordinator pod) has the cause."
	}
	return " The Coordinator's log (`kubectl logs` of the coordinator pod) has the cause."
}

// endName says how a connection ended.
func endName(err error) string {
	if errors.Is(err, io.EOF) {
		return "FIN"
	}
	return err.Error()
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
