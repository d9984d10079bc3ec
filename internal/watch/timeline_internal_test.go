package watch

import (
	"context"
	"io"
	"math"
	"testing"
	"time"
	"unsafe"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/ccproxy-dev/ccproxy/proxy"
	"github.com/ccproxy-dev/ccproxy/proxy/inspect"
	"github.com/ccproxy-dev/ccproxy/trace"
)

// TestTimelineFlushOrder: events recorded out of arrival order (the two
// directions' parsers race for the lock) reach the span in the order
// their bytes arrived, and a direction's events that share a chunk's time
// keep the order they were recorded in.
func TestTimelineFlushOrder(t *testing.T) {
	base := time.Unix(1_700_000_000, 0)
	at := func(ms int) time.Time { return base.Add(time.Duration(ms) * time.Millisecond) }
	hs := func(dir inspect.Direction, typ uint8) inspect.Event {
		return inspect.Event{Kind: inspect.KindHandshakeMessage, Dir: dir, HandshakeType: typ}
	}
	var tl timeline
	tl.parserEvent(hs(inspect.ClientToServer, 1), at(0))
	tl.parserEvent(hs(inspect.ClientToServer, 15), at(30)) // client's later chunk parsed first
	tl.parserEvent(hs(inspect.ServerToClient, 2), at(20))
	tl.parserEvent(hs(inspect.ServerToClient, 8), at(20)) // same chunk as the one before
	tl.ended(proxy.Direction(0), io.EOF, at(40))

	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	_, span := tp.Tracer("test").Start(context.Background(), "root")
	tl.flush(span)
	span.End()

	evs := rec.Ended()[0].Events()
	want := []struct {
		at   time.Time
		name string
	}{
		{at(0), "tls.handshake_message"},
		{at(20), "tls.handshake_message"},
		{at(20), "tls.handshake_message"},
		{at(30), "tls.handshake_message"},
		{at(40), "relay.ended"},
	}
	if len(evs) != len(want) {
		t.Fatalf("%d events, want %d", len(evs), len(want))
	}
	for i, w := range want {
		if !evs[i].Time.Equal(w.at) || evs[i].Name != w.name {
			t.Errorf("event %d: %s at %v, want %s at %v", i, evs[i].Name, evs[i].Time.Sub(base), w.name, w.at.Sub(base))
		}
	}
	// The two server events of one chunk: ServerHello (2) before
	// EncryptedExtensions (8), as recorded.
	if got := hsTypeOf(evs[1]); got != "server_hello" {
		t.Errorf("first event of the server's chunk is %q, want server_hello", got)
	}
	if tl.evs != nil {
		t.Error("flush kept the events")
	}
}

func hsTypeOf(ev sdktrace.Event) string {
	for _, a := range ev.Attributes {
		if a.Key == trace.HandshakeType {
			return a.Value.AsString()
		}
	}
	return ""
}

// TestTimelineStamp: event times are microsecond offsets from the first
// event's, signed (a later record may be of an earlier chunk) and
// saturating, and read back to the microsecond.
func TestTimelineStamp(t *testing.T) {
	base := time.Unix(1_700_000_000, 123_456_789)
	for _, tc := range []struct {
		name string
		d    time.Duration
		want time.Duration // read back
	}{
		{"later", 1500 * time.Microsecond, 1500 * time.Microsecond},
		{"earlier", -2 * time.Millisecond, -2 * time.Millisecond},
		{"sub-microsecond", 999 * time.Nanosecond, 0},
		{"beyond range", 48 * time.Hour, time.Duration(math.MaxInt32) * time.Microsecond},
		{"before range", -48 * time.Hour, time.Duration(math.MinInt32) * time.Microsecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var tl timeline
			tl.ended(proxy.Direction(0), io.EOF, base)
			tl.ended(proxy.Direction(1), io.EOF, base.Add(tc.d))
			if got := tl.time(&tl.evs[0]); !got.Equal(base) {
				t.Errorf("first event at %v, want %v", got, base)
			}
			if got := tl.time(&tl.evs[1]).Sub(base); got != tc.want {
				t.Errorf("second event %v after the first, want %v", got, tc.want)
			}
		})
	}
}

// TestConnFitsItsSizeClass: every open connection holds a conn for as long
// as it lives (10,000 of them are the relay's idle memory goal); it stays
// within the 640-byte allocation class. A field that pushes it over costs
// 64 bytes more per connection, not its own size.
func TestConnFitsItsSizeClass(t *testing.T) {
	if n := unsafe.Sizeof(conn{}); n > 640 {
		t.Errorf("conn is %d bytes, past the 640-byte size class: group small fields, or keep rare ones behind a pointer", n)
	}
	if n := unsafe.Sizeof(tlEvent{}); n > 16 {
		t.Errorf("a timeline event is %d bytes, want 16", n)
	}
}
