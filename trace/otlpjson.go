package trace

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	oteltrace "go.opentelemetry.io/otel/trace"
	"gopkg.in/natefinch/lumberjack.v2"
)

// FileExporter writes spans as OTLP/JSON, one ExportTraceServiceRequest
// object per line: the format the OpenTelemetry Collector's file exporter
// writes and its otlpjsonfile receiver reads. The collector's pdata
// marshaler is used because OTLP/JSON spells trace and span ids as hex,
// where a plain protojson marshal would write base64.
type FileExporter struct {
	mu sync.Mutex
	w  io.Writer
	c  io.Closer
	// maxLine is the longest line a write may be (0: any): a rotating
	// file refuses a write longer than a whole file, so a batch that
	// would make one is written as several lines.
	maxLine int
}

// Rotation bounds a trace file: once a write would take it past MaxBytes,
// it is renamed with its time (traces-2026-12-06T20-19-20.000.jsonl beside
// traces.jsonl) and a new one started; at most MaxFiles renamed files are
// kept, the oldest removed. `ccproxy analyze traces.jsonl` reads the
// active file and the kept ones as one set (RotatedSet).
type Rotation struct {
	MaxBytes int64 // 0: the file grows without bound
	MaxFiles int   // old files kept (0: all of them)
}

// NewFileExporter appends to path, creating it (0644) if needed; "-" means
// standard output.
func NewFileExporter(path string) (*FileExporter, error) {
	return NewRotatingFileExporter(path, Rotation{})
}

// NewRotatingFileExporter appends to path as NewFileExporter does, and
// rotates it by size as rot says. The rotation is lumberjack's
// (gopkg.in/natefinch/lumberjack.v2), which sizes files in whole
// megabytes: MaxBytes is rounded up to one.
func NewRotatingFileExporter(path string, rot Rotation) (*FileExporter, error) {
	if path == "-" {
		return &FileExporter{w: os.Stdout}, nil
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open trace file: %w", err)
	}
	if rot.MaxBytes <= 0 {
		return &FileExporter{w: f, c: f}, nil
	}
	f.Close() // lumberjack opens it itself; this was the early check
	mb := int((rot.MaxBytes + megabyte - 1) / megabyte)
	lj := &lumberjack.Logger{Filename: path, MaxSize: mb, MaxBackups: rot.MaxFiles}
	return &FileExporter{w: lj, c: lj, maxLine: mb * megabyte}, nil
}

const megabyte = 1 << 20

// NewWriterExporter writes OTLP/JSON lines to w.
func NewWriterExporter(w io.Writer) *FileExporter { return &FileExporter{w: w} }

// ExportSpans writes spans as one line.
func (e *FileExporter) ExportSpans(_ context.Context, spans []sdktrace.ReadOnlySpan) error {
	if len(spans) == 0 {
		return nil
	}
	b, err := (&ptrace.JSONMarshaler{}).MarshalTraces(ToPdata(spans))
	if err != nil {
		return fmt.Errorf("marshal spans: %w", err)
	}
	b = append(b, '\n')
	if e.maxLine > 0 && len(b) > e.maxLine && len(spans) > 1 {
		half := len(spans) / 2
		return errors.Join(e.ExportSpans(context.Background(), spans[:half]), e.ExportSpans(context.Background(), spans[half:]))
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, err := e.w.Write(b); err != nil {
		return fmt.Errorf("write trace file: %w", err)
	}
	return nil
}

// Shutdown closes the file.
func (e *FileExporter) Shutdown(context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.c != nil {
		err := e.c.Close()
		e.c = nil
		return err
	}
	return nil
}

// ToPdata converts SDK spans to the collector's data model, grouped by
// resource and instrumentation scope.
func ToPdata(spans []sdktrace.ReadOnlySpan) ptrace.Traces {
	td := ptrace.NewTraces()
	type key struct {
		res   attribute.Distinct
		scope string
	}
	scopes := map[key]ptrace.ScopeSpans{}
	resources := map[attribute.Distinct]ptrace.ResourceSpans{}
	for _, s := range spans {
		res := s.Resource()
		rk := res.Equivalent()
		rs, ok := resources[rk]
		if !ok {
			rs = td.ResourceSpans().AppendEmpty()
			putAttrs(rs.Resource().Attributes(), res.Attributes())
			if u := res.SchemaURL(); u != "" {
				rs.SetSchemaUrl(u)
			}
			resources[rk] = rs
		}
		sk := key{rk, s.InstrumentationScope().Name + "\x00" + s.InstrumentationScope().Version}
		ss, ok := scopes[sk]
		if !ok {
			ss = rs.ScopeSpans().AppendEmpty()
			ss.Scope().SetName(s.InstrumentationScope().Name)
			ss.Scope().SetVersion(s.InstrumentationScope().Version)
			scopes[sk] = ss
		}
		putSpan(ss.Spans().AppendEmpty(), s)
	}
	return td
}

func putSpan(ps ptrace.Span, s sdktrace.ReadOnlySpan) {
	sc := s.SpanContext()
	ps.SetTraceID(pcommon.TraceID(sc.TraceID()))
	ps.SetSpanID(pcommon.SpanID(sc.SpanID()))
	if p := s.Parent(); p.IsValid() {
		ps.SetParentSpanID(pcommon.SpanID(p.SpanID()))
	}
	ps.TraceState().FromRaw(sc.TraceState().String())
	ps.SetName(s.Name())
	ps.SetKind(spanKind(s.SpanKind()))
	ps.SetStartTimestamp(pcommon.NewTimestampFromTime(s.StartTime()))
	ps.SetEndTimestamp(pcommon.NewTimestampFromTime(s.EndTime()))
	putAttrs(ps.Attributes(), s.Attributes())
	ps.SetDroppedAttributesCount(uint32(s.DroppedAttributes()))
	for _, ev := range s.Events() {
		pe := ps.Events().AppendEmpty()
		pe.SetName(ev.Name)
		pe.SetTimestamp(pcommon.NewTimestampFromTime(ev.Time))
		putAttrs(pe.Attributes(), ev.Attributes)
	}
	ps.SetDroppedEventsCount(uint32(s.DroppedEvents()))
	for _, l := range s.Links() {
		pl := ps.Links().AppendEmpty()
		pl.SetTraceID(pcommon.TraceID(l.SpanContext.TraceID()))
		pl.SetSpanID(pcommon.SpanID(l.SpanContext.SpanID()))
		putAttrs(pl.Attributes(), l.Attributes)
	}
	switch s.Status().Code {
	case codes.Error:
		ps.Status().SetCode(ptrace.StatusCodeError)
		ps.Status().SetMessage(s.Status().Description)
	case codes.Ok:
		ps.Status().SetCode(ptrace.StatusCodeOk)
	}
}

func spanKind(k oteltrace.SpanKind) ptrace.SpanKind {
	switch k {
	case oteltrace.SpanKindInternal:
		return ptrace.SpanKindInternal
	case oteltrace.SpanKindServer:
		return ptrace.SpanKindServer
	case oteltrace.SpanKindClient:
		return ptrace.SpanKindClient
	case oteltrace.SpanKindProducer:
		return ptrace.SpanKindProducer
	case oteltrace.SpanKindConsumer:
		return ptrace.SpanKindConsumer
	}
	return ptrace.SpanKindUnspecified
}

func putAttrs(m pcommon.Map, kvs []attribute.KeyValue) {
	m.EnsureCapacity(len(kvs))
	for _, kv := range kvs {
		k := string(kv.Key)
		switch kv.Value.Type() {
		case attribute.BOOL:
			m.PutBool(k, kv.Value.AsBool())
		case attribute.INT64:
			m.PutInt(k, kv.Value.AsInt64())
		case attribute.FLOAT64:
			m.PutDouble(k, kv.Value.AsFloat64())
		case attribute.STRING:
			m.PutStr(k, kv.Value.AsString())
		case attribute.BOOLSLICE:
			s := m.PutEmptySlice(k)
			for _, v := range kv.Value.AsBoolSlice() {
				s.AppendEmpty().SetBool(v)
			}
		case attribute.INT64SLICE:
			s := m.PutEmptySlice(k)
			for _, v := range kv.Value.AsInt64Slice() {
				s.AppendEmpty().SetInt(v)
			}
		case attribute.FLOAT64SLICE:
			s := m.PutEmptySlice(k)
			for _, v := range kv.Value.AsFloat64Slice() {
				s.AppendEmpty().SetDouble(v)
			}
		case attribute.STRINGSLICE:
			s := m.PutEmptySlice(k)
			for _, v := range kv.Value.AsStringSlice() {
				s.AppendEmpty().SetStr(v)
			}
		default:
			m.PutStr(k, kv.Value.String())
		}
	}
}
