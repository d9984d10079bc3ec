package watch_test

import (
	"crypto/tls"
	"slices"
	"testing"

	"github.com/ccproxy-dev/ccproxy/trace"
)

// TestTimelineOnRootSpan: the handshake's events, kept compact while the
// connection lives, are on the root span when it ends, in the order they
// happened and with their attributes; the handshake and stream child
// spans, made at the close, hang under the root and lie within it.
func TestTimelineOnRootSpan(t *testing.T) {
	h := newHarness(t, tlsServer(t, tls.VersionTLS13, echo), nil)
	if err := dialTLS(t, h.addr, clientConfig(tls.VersionTLS13, false)); err != nil {
		t.Fatal(err)
	}
	root, _ := h.span()
	var names []string
	var last uint64
	for i := 0; i < root.Events().Len(); i++ {
		ev := root.Events().At(i)
		names = append(names, ev.Name())
		if ts := uint64(ev.Timestamp()); ts < last {
			t.Errorf("event %d (%s) is earlier than the one before it", i, ev.Name())
		} else {
			last = ts
		}
		if _, ok := ev.Attributes().Get(string(trace.Direction)); !ok {
			t.Errorf("event %s has no %s", ev.Name(), trace.Direction)
		}
		if ev.Name() == "tls.client_hello" {
			if v, _ := ev.Attributes().Get(string(trace.HandshakeType)); v.Str() != "client_hello" {
				t.Errorf("tls.client_hello: handshake type %q", v.Str())
			}
		}
	}
	for _, want := range []string{"tls.client_hello", "tls.server_hello", "tls.application_data", "relay.ended"} {
		if !slices.Contains(names, want) {
			t.Errorf("root span events %v lack %s", names, want)
		}
	}
	if n := root.Events().Len(); n > 64 {
		t.Errorf("%d events on one connection's root span", n)
	}
	children := map[string]bool{}
	for _, s := range readSpans(t, h.file) {
		if s.ParentSpanID() != root.SpanID() {
			continue
		}
		children[s.Name()] = true
		if s.StartTimestamp() < root.StartTimestamp() || s.EndTimestamp() > root.EndTimestamp() || s.EndTimestamp() < s.StartTimestamp() {
			t.Errorf("child %s [%d, %d] not within the root [%d, %d]", s.Name(), s.StartTimestamp(), s.EndTimestamp(), root.StartTimestamp(), root.EndTimestamp())
		}
	}
	for _, want := range []string{trace.SpanUpstreamDial, trace.SpanTLSHandshake, trace.SpanRelayStream} {
		if !children[want] {
			t.Errorf("no %s child span (children: %v)", want, children)
		}
	}
}
