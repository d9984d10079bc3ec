package probe

import (
	"context"
	"fmt"
	"io"
	"strings"
	"syscall"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ccproxy-dev/ccproxy/internal/failure"
	"github.com/ccproxy-dev/ccproxy/proxy/inspect"
)

// TestJudgeStateErrors: a failed GetManifests is named from the status the
// Coordinator sent, unless the connection broke under the call.
func TestJudgeStateErrors(t *testing.T) {
	okWire := func() inspect.Verdict {
		return inspect.Verdict{Mode: failure.OK, Detail: "TLS 1.3 handshake finished and application data flowed."}
	}
	resetWire := func() inspect.Verdict {
		return inspect.Verdict{Mode: failure.UpstreamReset, Detail: "The upstream reset the connection after the handshake while the client was still connected (read: connection reset by peer)."}
	}
	callErr := func(c codes.Code, msg string) error {
		return fmt.Errorf("getting manifests: %w", status.Error(c, msg))
	}
	tests := []struct {
		name    string
		err     error
		broke   error
		wire    func() inspect.Verdict
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
			broke: syscall.ECONNRESET, wire: resetWire, want: failure.UpstreamReset, details: []string{"reset the connection", "The user API call failed"}},
		{name: "recovery text wins over a broken wire", err: callErr(codes.FailedPrecondition, "coordinator is in recovery mode"),
			broke: io.EOF, wire: resetWire, want: failure.CoordinatorRecoveryMode},
		{name: "FIN under the call", err: callErr(codes.Unavailable, "error reading from server: EOF"),
			broke: io.EOF, want: failure.UpstreamReset, details: []string{"ended the connection (FIN) during GetManifests"}},
		{name: "answered, then the connection ended", err: callErr(codes.Internal, "getting state: store closed"),
			broke: io.EOF, want: failure.CoordinatorAPIError, details: []string{"gRPC code Internal"}},
		{name: "no answer before the deadline", err: callErr(codes.DeadlineExceeded, "context deadline exceeded"),
			broke: context.DeadlineExceeded, want: failure.CoordinatorAPIError, details: []string{"did not answer GetManifests before the probe's deadline", "DeadlineExceeded"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			wire := tc.wire
			if wire == nil {
				wire = okWire
			}
			st := &State{}
			mode, detail := judgeState(st, tc.err, tc.broke, nil, wire, "Attested handshake finished (TLS 1.3, nonce in the ALPN entry)")
			if mode != tc.want {
				t.Fatalf("mode %s (%s), want %s", mode, detail, tc.want)
			}
			for _, d := range tc.details {
				if !strings.Contains(detail, d) {
					t.Errorf("detail %q lacks %q", detail, d)
				}
			}
		})
	}
}
