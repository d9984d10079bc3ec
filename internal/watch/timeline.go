package watch

import (
	"errors"
	"io"
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
// 64-byte key-values); a connection collects some 20 of them during its
// handshake and then may stay open for hours. Here each is 48 bytes, and
// the span's copy exists only for the moment between the close and the
// export.
type timeline struct {
	evs []tlEvent
}

// maxTimeline bounds what one connection records. The parsers stop after a
// few dozen records per direction; this is a backstop.
const maxTimeline = 128

// tlEvent is a parser event (kind != 0) or the end of a relay direction
// (kind 0).
type tlEvent struct {
	at      int64  // unix nanoseconds
	offset  int64  // stream offset (parser events)
	msg     string // the error text of a NotTLS or ParseError event, or of a direction's end
	length  uint16
	kind    inspect.EventKind
	dir     uint8 // inspect.Direction for parser events, proxy.Direction for ends
	recType inspect.RecordType
	hsType  uint8
	alert   inspect.Alert
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
		at:      at.UnixNano(),
		offset:  ev.Offset,
		length:  ev.Record.Length,
		kind:    ev.Kind,
		dir:     uint8(ev.Dir),
		recType: ev.Record.Type,
		hsType:  ev.HandshakeType,
	}
	switch ev.Kind {
	case inspect.KindAlert:
		e.alert = *ev.Alert
	case inspect.KindNotTLS, inspect.KindParseError:
		e.msg = ev.Err.Error()
	}
	t.evs = append(t.evs, e)
}

// ended records that dir's source stopped with err (io.EOF for a FIN).
func (t *timeline) ended(dir proxy.Direction, err error, at time.Time) {
	if len(t.evs) >= maxTimeline {
		return
	}
	e := tlEvent{at: at.UnixNano(), dir: uint8(dir)}
	if err != nil && !errors.Is(err, io.EOF) {
		e.msg = err.Error()
	}
	t.evs = append(t.evs, e)
}

// flush adds the recorded events to span, in the order they happened, and
// forgets them.
func (t *timeline) flush(span oteltrace.Span) {
	for _, e := range t.evs {
		at := oteltrace.WithTimestamp(time.Unix(0, e.at))
		if e.kind == 0 {
			attrs := []attribute.KeyValue{trace.Direction.String(proxy.Direction(e.dir).String())}
			if e.msg != "" {
				attrs = append(attrs, trace.ErrorMessage.String(e.msg))
			}
			span.AddEvent("relay.ended", at, oteltrace.WithAttributes(attrs...))
			continue
		}
		attrs := []attribute.KeyValue{
			trace.Direction.String(inspect.Direction(e.dir).String()),
			trace.StreamOffset.Int64(e.offset),
			trace.RecordType.Int(int(e.recType)),
			trace.RecordLength.Int(int(e.length)),
		}
		switch e.kind {
		case inspect.KindAlert:
			attrs = append(attrs, trace.TLSAlertDescription.Int(int(e.alert.Description)), trace.TLSAlert.String(e.alert.String()))
		case inspect.KindHandshakeMessage, inspect.KindClientHello, inspect.KindServerHello, inspect.KindCertificate:
			attrs = append(attrs, trace.HandshakeType.String(inspect.HandshakeName(e.hsType)))
		case inspect.KindNotTLS, inspect.KindParseError:
			attrs = append(attrs, trace.ErrorMessage.String(e.msg))
		}
		span.AddEvent("tls."+e.kind.String(), at, oteltrace.WithAttributes(attrs...))
	}
	t.evs = nil
}
