package analyze

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/ccproxy-dev/ccproxy/trace"
)

// WriteJSON writes the summary as one indented JSON object.
func (s Summary) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(s); err != nil {
		return fmt.Errorf("writing analyze report: %w", err)
	}
	return nil
}

// barWidth is the width of the longest bar in the time chart.
const barWidth = 40

// WriteText writes the summary for a person to read.
func (s Summary) WriteText(w io.Writer) error {
	bw := bufio.NewWriter(w)
	p := func(format string, a ...any) { fmt.Fprintf(bw, format, a...) }

	src := fmt.Sprintf("%d lines, %d spans", s.Read.Lines, s.Read.Spans)
	if s.Read.Traces > 0 {
		src = fmt.Sprintf("%d traces, %d spans", s.Read.Traces, s.Read.Spans)
	}
	if s.Read.Folded > 0 {
		src += fmt.Sprintf("; %s counted only in their runs' summaries (folded: no spans of their own)",
			plural(s.Read.Folded, "connection"))
	}
	if s.Read.UnsummarizedRuns > 0 {
		src += fmt.Sprintf("; %s with attempts missing and no summary span (%s) to count them",
			plural(s.Read.UnsummarizedRuns, "run"), trace.SpanRun)
	}
	if s.Read.Skipped > 0 {
		src += fmt.Sprintf(", %d malformed lines skipped", s.Read.Skipped)
	}
	filter := ""
	if s.Filter.Mode != "" {
		filter += " mode=" + s.Filter.Mode
	}
	if !s.Filter.Since.IsZero() {
		filter += " since=" + s.Filter.Since.UTC().Format(time.RFC3339)
	}
	if filter != "" {
		filter = " (filter:" + filter + ")"
	}
	if s.Connections == 0 {
		p("No %s spans%s (%s).\n", trace.SpanConnection, filter, src)
		return flush(bw)
	}
	p("%d connections from %s to %s%s\n(%s)\n", s.Connections, ts(s.From), ts(s.To), filter, src)

	if r := s.Runs; r.Runs > 0 {
		p("\nRuns (a client's connections to one upstream while its CLI retried, %s)\n", trace.RunAttempt)
		p("  %s\n", runCounts(r)+pick(len(r.Listed) > 0, ":", ""))
		for _, run := range r.Listed {
			p("  %s\n", run.Summary)
		}
		for _, n := range r.Notes {
			p("  note: %s\n", n)
		}
	}

	if n := s.SentNothing.Count; n > 0 {
		p("\nBy failure mode (%d that sent something)\n", s.Connections-n)
	} else {
		p("\nBy failure mode\n")
	}
	p("  %-30s %8s %6s  %-20s  %-20s\n", "MODE", "COUNT", "%", "FIRST", "LAST")
	for _, m := range s.Modes {
		p("  %-30s %8d %6.1f  %-20s  %-20s\n", m.Mode, m.Count, m.Percent, ts(m.First), ts(m.Last))
	}
	if sn := s.SentNothing; sn.Count > 0 {
		p("\nSent nothing\n  %s\n  first %s, last %s; not counted as failures above\n", sentNothingLine(sn.Count), ts(sn.First), ts(sn.Last))
	}

	p("\nBy upstream\n")
	p("  %-32s %8s %8s %8s  %-24s  %s\n", "UPSTREAM", "COUNT", "OK", "NOTHING", "FIRST BYTE ms p50/p99/max", "FAILURES")
	for _, u := range s.Upstreams {
		lat := "-"
		if u.FirstByte.Count > 0 {
			lat = fmt.Sprintf("%s/%s/%s", num(u.FirstByte.P50), num(u.FirstByte.P99), num(u.FirstByte.Max))
		}
		p("  %-32s %8d %8d %8d  %-24s  %s\n", u.Address, u.Count, u.OK, u.SentNothing, lat, failureList(u.Modes))
	}
	if s.SentNothing.Count > 0 {
		p("  (NOTHING: connections that sent nothing, also in COUNT)\n")
	}

	p("\nOver time (bucket %s)\n", time.Duration(s.BucketMS)*time.Millisecond)
	if s.BucketNote != "" {
		p("  note: %s\n", s.BucketNote)
	}
	peak := 0
	for _, b := range s.Buckets {
		peak = max(peak, b.Total)
	}
	for _, b := range s.Buckets {
		n := 0
		if peak > 0 {
			n = (b.Total*barWidth + peak - 1) / peak
		}
		list := failureList(b.Modes)
		if b.SentNothing > 0 {
			if list != "" {
				list += "; "
			}
			list += fmt.Sprintf("%d sent nothing", b.SentNothing)
		}
		p("  %-20s %6d %-*s %s\n", ts(b.Start), b.Total, barWidth, strings.Repeat("#", n), list)
	}

	p("\nIssuer latency (%s)\n", trace.UpstreamFirstByteMS)
	if s.FirstByte.Count == 0 {
		p("  no connection reached the upstream's first byte\n")
	} else {
		f := s.FirstByte
		p("  %d connections: p50 %s ms, p90 %s ms, p99 %s ms, max %s ms\n", f.Count, num(f.P50), num(f.P90), num(f.P99), num(f.Max))
	}

	if len(s.Details) > 0 {
		p("\nMost frequent details\n")
		for _, d := range s.Details {
			p("  %6d  %-26s %s\n", d.Count, d.Mode, d.Detail)
		}
	}
	if len(s.Read.Problems) > 0 {
		p("\nSkipped input\n")
		for _, pr := range s.Read.Problems {
			p("  %s\n", pr)
		}
		if s.Read.Skipped > len(s.Read.Problems) {
			p("  ... and %d more\n", s.Read.Skipped-len(s.Read.Problems))
		}
	}
	return flush(bw)
}

// runCounts is the line above the listed runs.
func runCounts(r RunReport) string {
	line := fmt.Sprintf("%s, %d retried, %d failed", plural(r.Runs, "run"), r.Retried, r.Failed)
	switch {
	case len(r.Listed) == 0:
		return line + "; none retried or failed"
	case r.More > 0:
		return fmt.Sprintf("%s; listed: the latest %d that retried or failed (%d more not listed)", line, len(r.Listed), r.More)
	}
	return line + "; listed: those that retried or failed"
}

// sentNothingLine is the one line that names the connections set apart, in
// the text report and on the HTML page.
func sentNothingLine(n int) string {
	if n == 1 {
		return "1 connection sent nothing (health check, port scan, abandoned retry): the client closed before its first byte"
	}
	return fmt.Sprintf("%d connections sent nothing (health checks, port scans, abandoned retries): the client closed before its first byte", n)
}

func flush(bw *bufio.Writer) error {
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("writing analyze report: %w", err)
	}
	return nil
}

func ts(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05") }

func num(f float64) string {
	if f == float64(int64(f)) {
		return fmt.Sprintf("%d", int64(f))
	}
	return fmt.Sprintf("%.1f", f)
}

// failureList lists the modes other than ok, most frequent first.
func failureList(modes map[string]int) string {
	type mc struct {
		mode string
		n    int
	}
	var l []mc
	for m, n := range modes {
		if m != "ok" && n > 0 {
			l = append(l, mc{m, n})
		}
	}
	sort.Slice(l, func(i, j int) bool {
		if l[i].n != l[j].n {
			return l[i].n > l[j].n
		}
		return l[i].mode < l[j].mode
	})
	parts := make([]string, len(l))
	for i, x := range l {
		parts[i] = fmt.Sprintf("%s %d", x.mode, x.n)
	}
	return strings.Join(parts, ", ")
}
