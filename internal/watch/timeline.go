package watch

import (
	"cmp"
	"errors"
	"io"
	"math"
	"slices"
	"time"

	"go.opentelemetry.io/otel/attribute"
	oteltrace "go.opentelemetry.io/otel/trace"

	"github.com/ccproxy-dev/ccproxy/proxy"
	"github.com/ccproxy-dev/ccproxy/proxy/inspect"
	"github.com/ccproxy-dev/ccproxy/trace"
)

// timeline keeps the events a connection's root span will carry (the
// handshake's records, how each direction ended) in a compact form while
// the connection lives, and adds them to the span only when it closes.
//
// An OpenTelemetry span event costs about 330 bytes (its attributes are
// 64-byte key-values); a connection collects some 16 of them during its
// handshake and then may stay open for hours. Here each is 16 bytes (its
// time a microsecond offset from the first event's, the rare error texts
// kept aside in msgs), and the span's copy exists only for the moment
// between the close and the export.
type timeline struct {
	base int64 // unix nanoseconds of the first event recorded
	evs  []tlEvent
	msgs []string
}

// maxTimeline bounds what one connection records. The parsers stop after a
// few dozen records per direction; this is a backstop.
const maxTimeline = 128

// tlEvent is a parser event (kind != 0) or the end of a relay direction
// (kind 0).
type tlEvent struct {
	// at is microseconds after timeline.base; an event recorded later may
	// have happened earlier (the two directions record in lock order), so
	// it is signed. It saturates at ±35 minutes.
	at      int32
	offset  uint32 // stream offset (parser events), saturating at 4 GiB
	length  uint16
	kind    inspect.EventKind
	dir     uint8 // inspect.Direction for parser events, proxy.Direction for ends
	recType inspect.RecordType
	hsType  uint8
	// aux is the alert (level<<8 | description) of a KindAlert event;
	// for the others, 1 + the index in msgs of its error text (that of a
	// NotTLS or ParseError event, or of a direction's end), 0 for none.
	aux uint16
}

// stamp is at as an offset from the timeline's base (set by the first
// event).
func (t *timeline) stamp(at time.Time) int32 {
	ns := at.UnixNano()
	if len(t.evs) == 0 && t.base == 0 {
		t.base = ns
	}
	us := (ns - t.base) / int64(time.Microsecond)
	return int32(max(min(us, math.MaxInt32), math.MinInt32))
}

// time is when e happened.
func (t *timeline) time(e *tlEvent) time.Time {
	return time.Unix(0, t.base+int64(e.at)*int64(time.Microsecond))
}

// setMsg keeps msg as e's error text.
func (t *timeline) setMsg(e *tlEvent, msg string) {
	t.msgs = append(t.msgs, msg)
	e.aux = uint16(len(t.msgs))
}

// msg is e's error text, "" for none.
func (t *timeline) msg(e *tlEvent) string {
	if e.kind == inspect.KindAlert || e.aux == 0 {
		return ""
	}
	return t.msgs[e.aux-1]
}

// parserEvent records one parser event.
func (t *timeline) parserEvent(ev inspect.Event, at time.Time) {
	if len(t.evs) >= maxTimeline {
		return
	}
	if t.evs == nil {
		t.evs = make([]tlEvent, 0, 16)
	}
	e := tlEvent{
		at:      t.stamp(at),
		offset:  uint32(max(min(ev.Offset, math.MaxUint32), 0)),
		length:  ev.Record.Length,
		kind:    ev.Kind,
		dir:     uint8(ev.Dir),
		recType: ev.Record.Type,
		hsType:  ev.HandshakeType,
	}
	switch ev.Kind {
	case inspect.KindAlert:
		e.aux = uint16(ev.Alert.Level)<<8 | uint16(ev.Alert.Description)
	case inspect.KindNotTLS, inspect.KindParseError:
		t.setMsg(&e, ev.Err.Error())
	}
	t.evs = append(t.evs, e)
}

// ended records that dir's source stopped with err (io.EOF for a FIN).
func (t *timeline) ended(dir proxy.Direction, err error, at time.Time) {
	if len(t.evs) >= maxTimeline {
		return
	}
	e := tlEvent{at: t.stamp(at), dir: uint8(dir)}
	if err != nil && !errors.Is(err, io.EOF) {
		t.setMsg(&e, err.Error())
	}
	t.evs = append(t.evs, e)
}

// trim lets go of the spare capacity the records grew into: a connection
// past its handshake records no more events (but for the ends of its
// directions), and may idle for hours.
func (t *timeline) trim() {
	if cap(t.evs)-len(t.evs) > 2 {
		t.evs = append(make([]tlEvent, 0, len(t.evs)+2), t.evs...) // room for the two ends
	}
}

// flush adds the recorded events to span, in the order they happened, and
// forgets them.
//
// The two directions' parsers record in the order they take the
// connection's lock, not in the order their bytes arrived: a chunk read
// from the server may be parsed after a later one from the client. Each
// event carries its chunk's arrival time, so a stable sort by it restores
// the order on the wire (and keeps a direction's own events in order).
func (t *timeline) flush(span oteltrace.Span) {
	slices.SortStableFunc(t.evs, func(a, b tlEvent) int { return cmp.Compare(a.at, b.at) })
	for i := range t.evs {
		e := &t.evs[i]
		at := oteltrace.WithTimestamp(t.time(e))
		if e.kind == 0 {
			attrs := []attribute.KeyValue{trace.Direction.String(proxy.Direction(e.dir).String())}
			if msg := t.msg(e); msg != "" {
				attrs = append(attrs, trace.ErrorMessage.String(msg))
			}
			span.AddEvent("relay.ended", at, oteltrace.WithAttributes(attrs...))
			continue
		}
		attrs := []attribute.KeyValue{
			trace.Direction.String(inspect.Direction(e.dir).String()),
			trace.StreamOffset.Int64(int64(e.offset)),
			trace.RecordType.Int(int(e.recType)),
			trace.RecordLength.Int(int(e.length)),
		}
		switch e.kind {
		case inspect.KindAlert:
			a := inspect.Alert{Level: uint8(e.aux >> 8), Description: uint8(e.aux)}
			attrs = append(attrs, trace.TLSAlertDescription.Int(int(a.Description)), trace.TLSAlert.String(a.String()))
		case inspect.KindHandshakeMessage, inspect.KindClientHello, inspect.KindServerHello, inspect.KindCertificate:
			attrs = append(attrs, trace.HandshakeType.String(inspect.HandshakeName(e.hsType)))
		case inspect.KindNotTLS, inspect.KindParseError:
			attrs = append(attrs, trace.ErrorMessage.String(t.msg(e)))
		}
		span.AddEvent("tls."+e.kind.String(), at, oteltrace.WithAttributes(attrs...))
	}
	t.evs, t.msgs, t.base = nil, nil, 0
}
