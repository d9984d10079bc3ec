package trace

import (
	"bufio"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// spansOf makes n ended spans, each with a detail of size bytes.
func spansOf(n, size int) []sdktrace.ReadOnlySpan {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	for range n {
		_, s := tp.Tracer("t").Start(context.Background(), SpanConnection)
		s.SetAttributes(FailureDetail.String(strings.Repeat("x", size)))
		s.End()
	}
	return rec.Ended()
}

func lines(t *testing.T, path string) int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 8<<20)
	n := 0
	for sc.Scan() {
		n++
	}
	return n
}

// TestRotation: the file is rotated once a write would take it past
// MaxBytes, MaxFiles rotated files are kept, RotatedSet lists them oldest
// first with the active file last, and no file outgrows the bound.
func TestRotation(t *testing.T) {
	tests := []struct {
		name      string
		maxFiles  int
		batches   int
		wantFiles int // rotated files kept
	}{
		{"fits in one file", 3, 2, 0},
		{"rotates, keeps all it made", 3, 6, 2},
		{"keeps only the newest", 1, 12, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "traces.jsonl")
			e, err := NewRotatingFileExporter(path, Rotation{MaxBytes: 1 << 20, MaxFiles: tc.maxFiles})
			if err != nil {
				t.Fatal(err)
			}
			// Each batch is one line of about 400 KiB: a file takes two.
			for range tc.batches {
				if err := e.ExportSpans(context.Background(), spansOf(100, 4000)); err != nil {
					t.Fatal(err)
				}
				time.Sleep(2 * time.Millisecond) // rotated names carry milliseconds
			}
			if err := e.Shutdown(context.Background()); err != nil {
				t.Fatal(err)
			}
			// lumberjack removes old files in the background.
			deadline := time.Now().Add(5 * time.Second)
			var set []string
			for {
				if set, err = RotatedSet(path); err != nil {
					t.Fatal(err)
				}
				if len(set) == tc.wantFiles+1 || time.Now().After(deadline) {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			if len(set) != tc.wantFiles+1 || set[len(set)-1] != path {
				t.Fatalf("set %v: want %d rotated files, then %s", set, tc.wantFiles, path)
			}
			total := 0
			for _, f := range set {
				st, err := os.Stat(f)
				if err != nil {
					t.Fatal(err)
				}
				if st.Size() > 1<<20 {
					t.Errorf("%s is %d bytes, over the 1 MiB bound", f, st.Size())
				}
				total += lines(t, f)
			}
			if tc.wantFiles == 0 && total != tc.batches {
				t.Errorf("%d lines, want %d", total, tc.batches)
			}
			for i := 1; i < len(set)-1; i++ {
				a, _ := os.Stat(set[i-1])
				b, _ := os.Stat(set[i])
				if b.ModTime().Before(a.ModTime()) {
					t.Errorf("set not oldest first: %v", set)
				}
			}
		})
	}
}

// TestRotationSplitsABatchLargerThanAFile: a batch whose line would be
// longer than a whole file is written as several lines, not refused.
func TestRotationSplitsABatchLargerThanAFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "traces.jsonl")
	e, err := NewRotatingFileExporter(path, Rotation{MaxBytes: 1 << 20, MaxFiles: 10})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.ExportSpans(context.Background(), spansOf(600, 4000)); err != nil {
		t.Fatalf("a 2.4 MB batch: %v", err)
	}
	e.Shutdown(context.Background())
	set, err := RotatedSet(path)
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, f := range set {
		total += lines(t, f)
	}
	if len(set) < 2 || total < 3 {
		t.Errorf("%d files, %d lines: want the batch split over several lines and files", len(set), total)
	}
}

func TestRotatedSetIgnoresOtherFiles(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{"traces.jsonl", "traces-2026-12-06T20-19-20.000.jsonl", "traces-2026-12-06T20-19-19.500.jsonl",
		"traces-old.jsonl", "traces-2026-12-06T20-19-21.000.json", "other-2026-12-06T20-19-20.000.jsonl"} {
		if err := os.WriteFile(filepath.Join(dir, n), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	set, err := RotatedSet(filepath.Join(dir, "traces.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"traces-2026-12-06T20-19-19.500.jsonl", "traces-2026-12-06T20-19-20.000.jsonl", "traces.jsonl"}
	if len(set) != len(want) {
		t.Fatalf("set %v, want %v", set, want)
	}
	for i := range want {
		if filepath.Base(set[i]) != want[i] {
			t.Errorf("set %v, want %v", set, want)
		}
	}
}
