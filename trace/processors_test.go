package trace

import (
	"context"
	"path/filepath"
	"sync"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// recorder is a span processor that keeps the names of the spans that end.
type recorder struct {
	mu    sync.Mutex
	names []string
}

func (r *recorder) OnStart(context.Context, sdktrace.ReadWriteSpan) {}
func (r *recorder) OnEnd(s sdktrace.ReadOnlySpan) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.names = append(r.names, s.Name())
}
func (r *recorder) Shutdown(context.Context) error   { return nil }
func (r *recorder) ForceFlush(context.Context) error { return nil }

// TestSetupProcessors: an extra span processor sees every span, with or
// without an exporter, and with processors alone tracing is on (the live
// page records spans though nothing is exported); with neither it is off.
func TestSetupProcessors(t *testing.T) {
	cases := []struct {
		name       string
		file       bool
		processors bool
		enabled    bool
	}{
		{"nothing", false, false, false},
		{"processor only", false, true, true},
		{"file and processor", true, true, true},
		{"file only", true, false, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := Config{Getenv: func(string) string { return "" }}
			rec := &recorder{}
			if c.processors {
				cfg.Processors = []sdktrace.SpanProcessor{rec}
			}
			if c.file {
				cfg.File = filepath.Join(t.TempDir(), "t.jsonl")
			}
			p, err := Setup(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			if p.Enabled() != c.enabled {
				t.Errorf("Enabled() = %v, want %v", p.Enabled(), c.enabled)
			}
			_, span := p.Tracer().Start(context.Background(), SpanConnection)
			span.End()
			if err := p.Shutdown(context.Background()); err != nil {
				t.Fatal(err)
			}
			want := 0
			if c.processors {
				want = 1
			}
			if len(rec.names) != want || (want == 1 && rec.names[0] != SpanConnection) {
				t.Errorf("processor saw %v, want %d %s span", rec.names, want, SpanConnection)
			}
		})
	}
}
