package probe

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync/atomic"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/ccproxy-dev/ccproxy/failure"
	"github.com/ccproxy-dev/ccproxy/proxy/inspect"
	"github.com/ccproxy-dev/ccproxy/userapi"
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
func getManifests(ctx context.Context, conn *tls.Conn, tlsState tls.ConnectionState, authority string) (*State, error) {
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

// judgeState names the Coordinator's state from the GetManifests outcome.
// wireVerdict is consulted only when the call failed for a reason that is
// not a Coordinator state: then the connection itself may have broken
// (upstream_reset), which the classifier decides. attested is the
// handshake's summary, the start of an ok detail.
func judgeState(st *State, apiErr error, local []byte, wireVerdict func() inspect.Verdict, attested string) (failure.Mode, string) {
	if apiErr != nil {
		if s, ok := status.FromError(errors.Unwrap(apiErr)); ok {
			msg := s.Message()
			switch {
			case strings.Contains(msg, "recovery mode"):
				return failure.CoordinatorRecoveryMode, fmt.Sprintf(
					"The Coordinator is in recovery mode (GetManifests: %s %q): it restarted without its state and waits for `contrast recover` with the seed share owner key.", s.Code(), msg)
			case s.Code() == codes.FailedPrecondition && (strings.Contains(msg, "no manifest configured") || strings.Contains(msg, "no manifests set")):
				return failure.CoordinatorNoManifest, fmt.Sprintf(
					"The Coordinator has no manifest yet (GetManifests: %s %q): run `contrast set` with the deployment's manifest.", s.Code(), msg)
			}
		}
		if v := wireVerdict(); v.Mode != failure.OK {
			return v.Mode, sentence(v.Detail) + " The user API call failed: " + apiErr.Error() + "."
		}
		// No contract mode names an unknown user API error; what it breaks
		// is `contrast verify`'s manifest check.
		return failure.ManifestMismatch, fmt.Sprintf(
			"%s, but GetManifests failed (%v), so the Coordinator's manifest could not be compared with manifest.json.", attested, apiErr)
	}
	if st.Manifests == 0 {
		return failure.CoordinatorNoManifest, "The Coordinator answered GetManifests with an empty manifest history (`contrast verify`: manifest history is empty): run `contrast set`."
	}
	if local == nil {
		return failure.OK, fmt.Sprintf("%s; the Coordinator holds %s (latest sha256 %s). No local manifest.json was given, so it was not compared.",
			attested, plural(st.Manifests, "manifest"), st.LatestManifestSHA256)
	}
	st.Compared = true
	st.Differences = diffManifests(local, st.latest)
	if len(st.Differences) == 0 {
		return failure.OK, fmt.Sprintf("%s; the Coordinator's active manifest (of %d) equals manifest.json.", attested, st.Manifests)
	}
	return failure.ManifestMismatch, fmt.Sprintf("The Coordinator's active manifest (sha256 %s) differs from manifest.json: %s.",
		st.LatestManifestSHA256, strings.Join(st.Differences, "; "))
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
