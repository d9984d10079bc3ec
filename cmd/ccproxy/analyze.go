package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ccproxy-dev/ccproxy/internal/analyze"
	"github.com/ccproxy-dev/ccproxy/internal/failure"
	"github.com/ccproxy-dev/ccproxy/trace"
)

type analyzeFlags struct {
	output        string
	bucket        time.Duration
	since         string
	mode          string
	top           int
	jaeger        string
	jaegerService string
	limit         int
	timeout       time.Duration
	trace         string
	runs          int
}

func newAnalyzeCmd() *cobra.Command {
	var f analyzeFlags
	cmd := &cobra.Command{
		Use:   "analyze FILE... | --jaeger URL",
		Short: "Summarize connection traces: CLI runs, failure modes, upstreams, over time, issuer latency",
		Long: `Summarize ccproxy's connection traces. First the runs: one CLI invocation's
connections from one client address to one upstream while the CLI retried
(ccproxy.run.attempt, and each retry's span link to the run's first
connection), e.g. "4 attempts over 31 s: lb_closed_early ×3, then
issuer_timeout — the CLI printed: ..."; the latest --runs that retried or
failed are listed. A run's attempts that the relay folded (written only as
counts in the run's ccproxy.run summary span, docs/runs.md) are counted in
every total as if each had its own span. Then connections per failure mode and per
upstream, counts over time, the upstream's first-byte latency (p50/p90/p99/max
of ccproxy.upstream.first_byte_ms, i.e. how fast the Coordinator's issuer
answered), the most frequent failure details, and the first and last time each
mode was seen. Connections whose client closed without sending a single byte
(client_aborted with ccproxy.bytes.client_to_upstream 0: TCP health checks,
port scans, clients that gave up to retry) are counted apart ("sent nothing",
in JSON sent_nothing), not among the failures.

Every ccproxy.connection span is a connection, also the in-cluster tunnel
end's (ccproxy tunnel serve), whose parent is the local end's span in another
file: its file alone shows its connections, and both ends' files given
together count each tunneled connection once (the local end's span).

FILE holds OTLP/JSON, one ExportTraceServiceRequest object per line, as
ccproxy --trace-file and the OpenTelemetry Collector's file exporter write it;
"-" reads standard input. A trace file ccproxy rotated (--trace-file-max-size)
is read with its kept rotated files (traces-<time>.jsonl beside it) as one;
a quoted glob ('traces*.jsonl') reads every match. Malformed lines are reported with file:line and
skipped. With --jaeger the same spans are read from Jaeger's query API: the
ccproxy.connection traces, and in a second query the ccproxy.run summaries,
whose folded attempts are counted for the runs of the connections fetched.
--limit bounds each query, newest traces first.

--output html writes a self-contained page (no script, no external assets):
the runs, each with its attempts on one time axis, the summary by failure
mode and, for the latest connections that match --mode,
--since or --trace, a waterfall of each connection's spans with its TLS records
as ticks and its attributes, like a tracing UI would draw it.

Exit status: 0 when the summary was printed (whatever the modes in it), 2 for a
usage error or unreadable input.`,
		Example: `  # everything in a trace file
  ccproxy analyze traces.jsonl

  # the last hour, one mode, per-minute buckets, as JSON
  ccproxy analyze --since 1h --mode lb_closed_early --bucket 1m --output json traces.jsonl

  # from Jaeger
  ccproxy analyze --jaeger http://127.0.0.1:16686 --since 2025-05-06T10:00:00Z

  # a page with the failed connections' waterfalls, or one trace
  ccproxy analyze --output html --mode policy_hash_mismatch traces.jsonl > failed.html
  ccproxy analyze --output html --trace 881c5d2a716823d3c8325605917808c0 traces.jsonl > one.html`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runAnalyze(cmd, args, f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.output, "output", "text", "output format: text, json or html")
	fl.DurationVar(&f.bucket, "bucket", 0, "width of the time buckets, e.g. 1m (default: chosen from the time span)")
	fl.StringVar(&f.since, "since", "", "only connections that started after this: a `DURATION` ago (1h) or an RFC 3339 time")
	fl.StringVar(&f.mode, "mode", "", "only connections with this failure `MODE` (e.g. lb_closed_early)")
	fl.IntVar(&f.top, "top", 10, "how many of the most frequent failure details to list")
	fl.StringVar(&f.jaeger, "jaeger", "", "read spans from Jaeger's query API at this `URL` (e.g. http://127.0.0.1:16686) instead of files")
	fl.StringVar(&f.jaegerService, "jaeger-service", "ccproxy", "service name the spans were exported under (with --jaeger)")
	fl.IntVar(&f.limit, "limit", 1000, "most traces to fetch per query, newest first (with --jaeger): connection traces, and as many run summary traces (one per run every 10 s and at its end)")
	fl.DurationVar(&f.timeout, "timeout", time.Minute, "how long to wait for Jaeger (with --jaeger)")
	fl.StringVar(&f.trace, "trace", "", "draw only the trace with this `ID` (hex; with --output html)")
	fl.IntVar(&f.runs, "runs", analyze.DefaultRunsListed, "how many of the latest runs that retried or failed to list")
	return cmd
}

func runAnalyze(cmd *cobra.Command, files []string, f analyzeFlags) error {
	if f.output != "text" && f.output != "json" && f.output != "html" {
		return usageErrorf("--output: %q is not text, json or html", f.output)
	}
	opts := analyze.Options{Bucket: f.bucket, TopDetails: f.top}
	if f.bucket < 0 {
		return usageErrorf("--bucket: %v is negative", f.bucket)
	}
	if f.top < 1 {
		return usageErrorf("--top: must be at least 1")
	}
	if f.runs < 1 {
		return usageErrorf("--runs: must be at least 1")
	}
	if f.mode != "" {
		if !slices.Contains(failure.All, failure.Mode(f.mode)) {
			names := make([]string, len(failure.All))
			for i, m := range failure.All {
				names[i] = string(m)
			}
			return usageErrorf("--mode: %q is not a failure mode; one of: %s", f.mode, strings.Join(names, ", "))
		}
		opts.Mode = f.mode
	}
	if f.since != "" {
		t, err := parseSince(f.since, time.Now())
		if err != nil {
			return usageErrorf("--since: %v", err)
		}
		opts.Since = t
	}

	sel := analyze.TraceSelection{Filter: opts}
	switch {
	case f.trace != "" && f.output != "html":
		return usageErrorf("--trace: only with --output html")
	case f.trace != "":
		id, err := analyze.ParseTraceID(f.trace)
		if err != nil {
			return usageErrorf("--trace: %v", err)
		}
		sel.TraceID = id
	}
	if f.output == "html" && f.jaeger != "" {
		return usageErrorf("--output: html draws traces from files; with --jaeger use text or json")
	}
	var conns []analyze.Connection
	// Runs see every connection: a run is listed whole when any of its
	// attempts is selected.
	runs := analyze.NewRunCollector()
	collect := func(c analyze.Connection) {
		runs.Add(c)
		// Filter while reading: a large file need not be held whole.
		if opts.Keep(c) {
			conns = append(conns, c)
		}
	}
	// One reader for all files: both tunnel ends' files together count each
	// connection once (see analyze.Reader).
	reader := analyze.NewReader(collect)
	var traces *analyze.TraceCollector
	if f.output == "html" {
		traces = analyze.NewTraceCollector(sel)
		reader.Collect(traces)
	}

	var stats analyze.ReadStats
	switch {
	case f.jaeger != "" && len(files) > 0:
		return usageErrorf("--jaeger: give either --jaeger or trace files, not both")
	case f.jaeger != "":
		if f.limit < 1 {
			return usageErrorf("--limit: must be at least 1")
		}
		q := analyze.JaegerQuery{
			BaseURL: f.jaeger, Service: f.jaegerService, Limit: f.limit, Since: opts.Since, Mode: opts.Mode,
			Client: &http.Client{Timeout: f.timeout},
		}
		if _, err := q.URL(); err != nil {
			return usageErrorf("--jaeger: %v", err)
		}
		st, err := analyze.FetchJaeger(cmd.Context(), q, collect)
		if err != nil {
			return err
		}
		if st.UnsummarizedRuns > 0 {
			fmt.Fprintf(cmd.ErrOrStderr(), "ccproxy analyze: runs with attempts missing and no %s summary from Jaeger to count them: %d (beyond --limit %d? not exported yet?)\n",
				trace.SpanRun, st.UnsummarizedRuns, f.limit)
		}
		stats = st
	case len(files) == 0:
		return usageErrorf("no input: give trace files (- for standard input) or --jaeger URL")
	default:
		names, err := traceFileSet(files)
		if err != nil {
			return err
		}
		if len(names) > len(files) {
			fmt.Fprintf(cmd.ErrOrStderr(), "ccproxy analyze: reading %d files (rotated trace files and globs included)\n", len(names))
		}
		for _, name := range names {
			st, err := readTraceFile(cmd, name, reader)
			if err != nil {
				return err
			}
			stats.Add(st)
		}
		stats.Add(reader.Flush())
	}

	sum := analyze.Summarize(conns, opts)
	sum.Read = stats
	sum.Runs = runs.Report(opts, f.runs)
	if stats.Skipped > 0 {
		fmt.Fprintf(cmd.ErrOrStderr(), "ccproxy analyze: skipped %d malformed lines (first: %s)\n", stats.Skipped, firstOr(stats.Problems, "?"))
	}
	switch f.output {
	case "json":
		return sum.WriteJSON(cmd.OutOrStdout())
	case "html":
		page := analyze.HTMLPage{Summary: sum, Traces: traces.Traces(), Matched: traces.Matched(), TraceID: f.trace}
		return page.Write(cmd.OutOrStdout())
	}
	return sum.WriteText(cmd.OutOrStdout())
}

func readTraceFile(cmd *cobra.Command, name string, reader *analyze.Reader) (analyze.ReadStats, error) {
	var r io.Reader
	if name == "-" {
		r = cmd.InOrStdin()
		name = "(stdin)"
	} else {
		fh, err := os.Open(name)
		if err != nil {
			return analyze.ReadStats{}, usageErrorf("FILE: %v", err)
		}
		defer fh.Close()
		r = fh
	}
	return reader.ReadOTLPJSON(r, name)
}

// traceFileSet expands the FILE arguments: a glob (quoted, so that the
// shell left it) to its matches, and a trace file that ccproxy rotated
// (--trace-file-max-size) to its kept rotated files, oldest first, and
// itself. Each file is read once.
func traceFileSet(args []string) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	add := func(name string) {
		if !seen[name] {
			seen[name] = true
			out = append(out, name)
		}
	}
	for _, arg := range args {
		if arg == "-" {
			add(arg)
			continue
		}
		if strings.ContainsAny(arg, "*?[") {
			matches, err := filepath.Glob(arg)
			if err != nil {
				return nil, usageErrorf("FILE: %q: %v", arg, err)
			}
			if len(matches) == 0 {
				return nil, usageErrorf("FILE: %q matches no file", arg)
			}
			for _, m := range matches {
				add(m)
			}
			continue
		}
		set, err := trace.RotatedSet(arg)
		if err != nil {
			return nil, usageErrorf("FILE: %v", err)
		}
		for _, name := range set {
			add(name)
		}
	}
	return out, nil
}

// parseSince reads --since: a duration before now, or an RFC 3339 time.
func parseSince(v string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(v); err == nil {
		if d <= 0 {
			return time.Time{}, fmt.Errorf("%q: the duration must be positive", v)
		}
		return now.Add(-d), nil
	}
	for _, layout := range []string{time.RFC3339Nano, time.RFC3339, "2006-01-02"} {
		if t, err := time.Parse(layout, v); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is neither a duration (90m) nor an RFC 3339 time (2025-05-06T10:00:00Z)", v)
}

func firstOr(s []string, def string) string {
	if len(s) > 0 {
		return s[0]
	}
	return def
}
