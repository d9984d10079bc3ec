package probe

import (
	"context"
	"fmt"
	"io"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ccproxy-dev/ccproxy/internal/failure"
	"github.com/ccproxy-dev/ccproxy/internal/verdict"
	"github.com/ccproxy-dev/ccproxy/proxy/inspect"
)

// wireAfterCall is what the probe's classifier says of a TLS 1.3 connection
// whose handshake finished and whose user API call failed with apiErr: the
// upstream's TCP side ended with upEnd (nil: still open) before the probe
// closed, and the probe told the classifier when the call went unanswered,
// as attempt does.
func wireAfterCall(upEnd, apiErr, broke error) inspect.Verdict {
	var c inspect.Classifier
	now := time.Now()
	c.Dialed(nil)
	c.Data(inspect.ClientToServer, 300, now)
	c.Observe(inspect.Event{Dir: inspect.ClientToServer, Kind: inspect.KindClientHello, ClientHello: &inspect.ClientHello{}}, now)
	c.Data(inspect.ServerToClient, 2000, now)
	c.Observe(inspect.Event{Dir: inspect.ServerToClient, Kind: inspect.KindServerHello, ServerHello: &inspect.ServerHello{Version: 0x0304}}, now)
	c.Observe(inspect.Event{Dir: inspect.ServerToClient, Kind: inspect.KindApplicationData, Record: inspect.RecordHeader{Type: 23, Length: 1500}}, now)
	c.Observe(inspect.Event{Dir: inspect.ClientToServer, Kind: inspect.KindApplicationData, Record: inspect.RecordHeader{Type: 23, Length: 900}}, now)
	c.Observe(inspect.Event{Dir: inspect.ClientToServer, Kind: inspect.KindApplicationData, Record: inspect.RecordHeader{Type: 23, Length: 120}}, now)
	if upEnd != nil {
		c.Ended(inspect.ServerToClient, upEnd, now.Add(time.Millisecond))
	}
	if unanswered(apiErr, broke) {
		c.Unanswered("GetManifests", broke)
	}
	c.Ended(inspect.ClientToServer, io.EOF, now.Add(time.Second))
	return c.Verdict()
}

// TestJudgeStateErrors: a failed GetManifests is named from the status the
// Coordinator sent, unless the connection broke under the call: then the
// wire names it, and verdict.Decide prefers it to an API error.
func TestJudgeStateErrors(t *testing.T) {
	callErr := func(c codes.Code, msg string) error {
		return fmt.Errorf("getting manifests: %w", status.Error(c, msg))
	}
	tests := []struct {
		name    string
		err     error
		broke   error
		upEnd   error // how the upstream's TCP side ended before the probe closed
		want    failure.Mode
		details []string
	}{
		{name: "recovery mode, authority (older)", err: callErr(codes.Internal, "syncing internal state: coordinator is in recovery mode"),
			want: failure.CoordinatorRecoveryMode, details: []string{"Internal", "contrast recover"}},
		{name: "recovery mode, state guard (newer)", err: callErr(codes.FailedPrecondition, "coordinator is in recovery mode"),
			want: failure.CoordinatorRecoveryMode, details: []string{"FailedPrecondition", "contrast recover"}},
		{name: "no manifest (newer)", err: callErr(codes.FailedPrecondition, "no manifest configured"), want: failure.CoordinatorNoManifest, details: []string{"contrast set"}},
		{name: "no manifest (older)", err: callErr(codes.FailedPrecondition, "no manifests set"), want: failure.CoordinatorNoManifest},
		{name: "no manifest text with another code", err: callErr(codes.Internal, "no manifest configured"),
			want: failure.CoordinatorAPIError, details: []string{"gRPC code Internal", `"no manifest configured"`}},
		{name: "history store denied", err: callErr(codes.Internal, `getting history: configmaps "x" is forbidden`),
			want: failure.CoordinatorAPIError, details: []string{"Attested handshake finished", "gRPC code Internal", `getting history: configmaps \"x\" is forbidden`, "log"}},
		{name: "Coordinator unavailable", err: callErr(codes.Unavailable, "peer recovery in progress"),
			want: failure.CoordinatorAPIError, details: []string{"gRPC code Unavailable", "peer recovery in progress"}},
		{name: "another gRPC service", err: callErr(codes.Unimplemented, "unknown service userapi.UserAPI"),
			want: failure.CoordinatorAPIError, details: []string{"Unimplemented", "not the Contrast user API"}},
		{name: "not a status", err: fmt.Errorf("creating user API client: %w", io.ErrUnexpectedEOF),
			want: failure.CoordinatorAPIError, details: []string{"gRPC code Unknown"}},
		// Transport failures of the call are the wire's, as before.
		{name: "reset under the call", err: callErr(codes.Unavailable, "error reading from server: read: connection reset by peer"),
			broke: syscall.ECONNRESET, upEnd: syscall.ECONNRESET, want: failure.UpstreamReset, details: []string{"reset the connection", "The user API call failed"}},
		{name: "recovery text wins over a broken wire", err: callErr(codes.FailedPrecondition, "coordinator is in recovery mode"),
			broke: syscall.ECONNRESET, upEnd: syscall.ECONNRESET, want: failure.CoordinatorRecoveryMode},
		{name: "FIN under the call", err: callErr(codes.Unavailable, "error reading from server: EOF"),
			broke: io.EOF, want: failure.UpstreamReset, details: []string{"ended the connection (FIN) during GetManifests", "The user API call failed"}},
		{name: "answered, then the connection ended", err: callErr(codes.Internal, "getting state: store closed"),
			broke: io.EOF, upEnd: io.EOF, want: failure.CoordinatorAPIError, details: []string{"gRPC code Internal"}},
		{name: "no answer before the deadline", err: callErr(codes.DeadlineExceeded, "context deadline exceeded"),
			broke: context.DeadlineExceeded, want: failure.CoordinatorAPIError, details: []string{"did not answer GetManifests before the probe's deadline", "DeadlineExceeded"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			wire := wireAfterCall(tc.upEnd, tc.err, tc.broke)
			state := judgeState(&State{}, tc.err, tc.broke, nil, "Attested handshake finished (TLS 1.3, nonce in the ALPN entry)")
			got := verdict.Decide(apiObserved(wire, &verdict.Finding{Mode: failure.OK}, state, tc.err))
			if got.Mode != tc.want {
				t.Fatalf("mode %s (%s), want %s", got.Mode, got.Detail, tc.want)
			}
			for _, d := range tc.details {
				if !strings.Contains(got.Detail, d) {
					t.Errorf("detail %q lacks %q", got.Detail, d)
				}
			}
		})
	}
}
