package demo

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	oteltrace "go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ccproxy-dev/ccproxy/integration/simulated/contrastcli"
	"github.com/ccproxy-dev/ccproxy/internal/failure"
	"github.com/ccproxy-dev/ccproxy/proxy"
	"github.com/ccproxy-dev/ccproxy/trace"
)

// RetryInterval is the tick of `contrast set`'s retries (internal/retry's
// IntervalRetrier, set to 1 s in cli/cmd/set.go).
const RetryInterval = time.Second

// SetLoop retries like `contrast set` (cli/cmd/set.go, setLoop): one gRPC
// connection, a call, and while the error is retriable (ServiceIsUnavailable)
// the next call on a RetryInterval ticker, until a call succeeds or ctx
// ends. gRPC reconnects underneath as the CLI's does (with Contrast's
// dial options, i.e. at once). The call is GetManifests, not SetManifest,
// so that the simulated Coordinator's manifest history stays as it was;
// the connections are the same. The error reads as the CLI's ("setting
// manifest: ...").
func SetLoop(ctx context.Context, addr string, opts contrastcli.Options) error {
	c, err := contrastcli.Dial(ctx, addr, opts)
	if err != nil {
		return err
	}
	defer c.Close()
	tick := time.NewTicker(RetryInterval)
	defer tick.Stop()
	for {
		_, err := c.GetManifests(ctx)
		if err == nil {
			return nil
		}
		if !ServiceIsUnavailable(err) {
			return fmt.Errorf("setting manifest: %w", err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("setting manifest: %w", ctx.Err())
		case <-tick.C:
		}
	}
}

// authHandshakeRe and retriableCauses are Contrast's newest retry predicate
// (internal/grpc/retry): of the handshake failures, only EOF and a deadline
// are worth another attempt.
var (
	authHandshakeRe = regexp.MustCompile(`transport: authentication handshake failed: ((?:\s|\w)+)`)
	retriableCauses = map[string]bool{"EOF": true, "context deadline exceeded": true}
)

// ServiceIsUnavailable is Contrast's retry predicate: gRPC code Unavailable,
// except an authentication handshake failure whose cause is not EOF or
// "context deadline exceeded".
func ServiceIsUnavailable(err error) bool {
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.Unavailable {
		return false
	}
	m := authHandshakeRe.FindStringSubmatch(err.Error())
	if len(m) < 2 {
		return true
	}
	return retriableCauses[m[1]]
}

// Attempt is one connection of a scenario as the relay marked it.
type Attempt struct {
	// Number is the root span's ccproxy.run.attempt.
	Number int
	// Linked: the root span links to another span (a retry's link to its
	// run's first root span).
	Linked bool
	// Mode is what the relay named the connection; "" if the verdict did
	// not come in time.
	Mode failure.Mode
}

// runRecorder sees the relay accept connections and their connection spans
// start (a retry's at its close, see internal/watch), and keeps, per
// accepted connection, its place in its run as the span's start options
// carry it: the attribute and the link the relay gives at the span's start.
type runRecorder struct {
	oteltrace.Tracer

	mu    sync.Mutex
	marks map[int64]Attempt // by accept time
	order []int64
}

func newRunRecorder(t oteltrace.Tracer) *runRecorder {
	return &runRecorder{Tracer: t, marks: map[int64]Attempt{}}
}

func (r *runRecorder) Start(ctx context.Context, name string, opts ...oteltrace.SpanStartOption) (context.Context, oteltrace.Span) {
	if name == trace.SpanConnection {
		cfg := oteltrace.NewSpanStartConfig(opts...)
		var a Attempt
		for _, kv := range cfg.Attributes() {
			if kv.Key == trace.RunAttempt {
				a.Number = int(kv.Value.AsInt64())
			}
		}
		for _, l := range cfg.Links() {
			a.Linked = a.Linked || l.SpanContext.IsValid()
		}
		at := cfg.Timestamp().UnixNano()
		r.mu.Lock()
		if _, ok := r.marks[at]; !ok {
			r.order = append(r.order, at)
		}
		r.marks[at] = a
		r.mu.Unlock()
	}
	return r.Tracer.Start(ctx, name, opts...)
}

// observe wraps a proxy NewObserver function to count every connection
// the relay accepts, also those whose span is still to come.
func (r *runRecorder) observe(next func(context.Context, proxy.ConnInfo) proxy.Observer) func(context.Context, proxy.ConnInfo) proxy.Observer {
	return func(ctx context.Context, info proxy.ConnInfo) proxy.Observer {
		at := info.Accepted.UnixNano()
		r.mu.Lock()
		if _, ok := r.marks[at]; !ok {
			r.order = append(r.order, at)
			r.marks[at] = Attempt{}
		}
		r.mu.Unlock()
		return next(ctx, info)
	}
}

// started counts the connections accepted.
func (r *runRecorder) started() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.order)
}

// attempts returns every connection in accept order with its mark and the
// mode named, from verdicts.
func (r *runRecorder) attempts(verdicts []connVerdict) []Attempt {
	modes := map[int64]failure.Mode{}
	for _, v := range verdicts {
		modes[v.accepted.UnixNano()] = v.v.Mode
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	order := append([]int64(nil), r.order...)
	slices.Sort(order)
	out := make([]Attempt, 0, len(order))
	for _, at := range order {
		a := r.marks[at]
		a.Mode = modes[at]
		out = append(out, a)
	}
	return out
}

// waitRun collects verdicts until every connection the relay started has
// been named and none started for a while (a retrying client's run is
// complete), at most 15 s.
func waitRun(ch <-chan connVerdict, rec *runRecorder) []connVerdict {
	const quiet = 300 * time.Millisecond
	var got []connVerdict
	deadline := time.After(15 * time.Second)
	for {
		select {
		case cv := <-ch:
			got = append(got, cv)
			continue
		case <-deadline:
			return got
		case <-time.After(quiet):
		}
		if len(got) > 0 && len(got) >= rec.started() {
			return got
		}
	}
}

// runOutcome is the mode that ended a run: the last attempt's, unless that
// one is client_aborted (abandoned when the client gave up).
func runOutcome(atts []Attempt) failure.Mode {
	for i := len(atts) - 1; i >= 0; i-- {
		if atts[i].Mode != failure.ClientAborted {
			return atts[i].Mode
		}
	}
	if len(atts) > 0 {
		return atts[len(atts)-1].Mode
	}
	return ""
}

// checkRun checks that atts are one run as the relay must mark it: numbered
// 1..n, each retry linked to the first when spans are recorded, the modes
// as want says ("lb_closed_early ×3, then issuer_timeout").
func checkRun(atts []Attempt, want string, linksRecorded bool) string {
	for i, a := range atts {
		if a.Number != i+1 {
			return fmt.Sprintf("the relay marked the scenario's connection %d as attempt %d, want one run (%s)", i+1, a.Number, RunText(atts))
		}
		if linksRecorded && i > 0 && !a.Linked {
			return fmt.Sprintf("attempt %d has no link to the run's first span", a.Number)
		}
	}
	if got := stepsText(atts); got != want {
		return fmt.Sprintf("the run is %q, want %q", got, want)
	}
	return ""
}

// RunText is a scenario's connections as runs: "1 attempt: ok", "4
// attempts: lb_closed_early ×3, then issuer_timeout", or, when the relay
// saw several runs, each of them after "2 runs: ".
func RunText(atts []Attempt) string {
	var runs [][]Attempt
	for _, a := range atts {
		if a.Number <= 1 || len(runs) == 0 {
			runs = append(runs, nil)
		}
		runs[len(runs)-1] = append(runs[len(runs)-1], a)
	}
	if len(runs) == 0 {
		return ""
	}
	parts := make([]string, len(runs))
	for i, r := range runs {
		n := strconv.Itoa(len(r)) + " attempts"
		if len(r) == 1 {
			n = "1 attempt"
		}
		parts[i] = n + ": " + stepsText(r)
	}
	if len(runs) == 1 {
		return parts[0]
	}
	return strconv.Itoa(len(runs)) + " runs: " + strings.Join(parts, "; ")
}

// stepsText collapses repeated modes: "lb_closed_early ×3, then issuer_timeout".
func stepsText(atts []Attempt) string {
	type step struct {
		mode string
		n    int
	}
	var steps []step
	for _, a := range atts {
		m := string(a.Mode)
		if m == "" {
			m = "?"
		}
		if len(steps) > 0 && steps[len(steps)-1].mode == m {
			steps[len(steps)-1].n++
			continue
		}
		steps = append(steps, step{m, 1})
	}
	parts := make([]string, len(steps))
	for i, s := range steps {
		parts[i] = s.mode
		if s.n > 1 {
			parts[i] += " ×" + strconv.Itoa(s.n)
		}
	}
	if len(parts) > 1 {
		parts[len(parts)-1] = "then " + parts[len(parts)-1]
	}
	return strings.Join(parts, ", ")
}
