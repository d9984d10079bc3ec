package analyze

import (
	"cmp"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/otel/attribute"

	"github.com/ccproxy-dev/ccproxy/internal/runs"
	"github.com/ccproxy-dev/ccproxy/trace"
)

// JaegerQuery selects traces from Jaeger's query API.
type JaegerQuery struct {
	// BaseURL is Jaeger's query endpoint, e.g. http://127.0.0.1:16686.
	BaseURL string
	// Service is the service name the spans were exported under
	// ("ccproxy" when empty).
	Service string
	// Limit is the most traces each of FetchJaeger's two queries fetches
	// (Jaeger's own default, 100, when 0), the newest first: Limit
	// connection traces, and Limit run summary traces. Each summary is a
	// trace of its own, and a run has one every 10 s while it goes on and
	// one at its end, so when the summaries of the fetched connections'
	// runs do not all fit in Limit, the oldest runs miss theirs and count
	// only their written attempts (ReadStats.UnsummarizedRuns says how
	// many).
	Limit int
	// Since is the earliest start time (zero: from the Unix epoch) of the
	// connection spans; the summaries are asked for from
	// runs.DefaultMaxSpan earlier, since a summary starts with its run's
	// first attempt.
	Since time.Time
	// Mode, when set, is passed to Jaeger as a tag filter on
	// trace.FailureMode, so only those connection traces are transferred.
	// Summaries carry no failure mode: they are fetched whole, and only
	// their folded attempts of Mode are reported.
	Mode string
	// Client is the HTTP client (http.DefaultClient when nil).
	Client *http.Client
	// Now is the query's end time (time.Now when nil); tests pin it.
	Now func() time.Time
}

// maxJaegerResponse bounds the body read from Jaeger.
const maxJaegerResponse = 512 << 20

// Jaeger's JSON model as its /api/traces endpoint returns it.
type jaegerResponse struct {
	Data   []jaegerTrace `json:"data"`
	Errors []struct {
		Code int    `json:"code"`
		Msg  string `json:"msg"`
	} `json:"errors"`
}

type jaegerTrace struct {
	TraceID string       `json:"traceID"`
	Spans   []jaegerSpan `json:"spans"`
}

type jaegerSpan struct {
	SpanID        string            `json:"spanID"`
	OperationName string            `json:"operationName"`
	References    []jaegerReference `json:"references"`
	StartTime     int64             `json:"startTime"` // µs since the epoch
	Duration      int64             `json:"duration"`  // µs
	Tags          []jaegerTag       `json:"tags"`
}

type jaegerReference struct {
	RefType string `json:"refType"`
	TraceID string `json:"traceID"`
	SpanID  string `json:"spanID"`
}

type jaegerTag struct {
	Key   string          `json:"key"`
	Type  string          `json:"type"`
	Value json.RawMessage `json:"value"`
}

// URL is the /api/traces request for q's connection traces.
func (q JaegerQuery) URL() (string, error) {
	return q.queryURL(trace.SpanConnection, q.Since, q.Mode)
}

// summaryURL is the /api/traces request for the run summaries that q's
// connections may belong to: every trace.SpanRun span (they carry no
// failure mode) that started at most runs.DefaultMaxSpan before q.Since,
// the longest a run's first attempt may precede a later one.
func (q JaegerQuery) summaryURL() (string, error) {
	since := q.Since
	if !since.IsZero() {
		since = since.Add(-runs.DefaultMaxSpan)
	}
	return q.queryURL(trace.SpanRun, since, "")
}

// queryURL is the /api/traces request for the traces with a span named
// operation that started from since on, with trace.FailureMode mode when
// mode is set.
func (q JaegerQuery) queryURL(operation string, since time.Time, mode string) (string, error) {
	base, err := url.Parse(strings.TrimRight(q.BaseURL, "/"))
	if err != nil || base.Scheme == "" || base.Host == "" {
		return "", fmt.Errorf("jaeger URL %q is not http(s)://host:port", q.BaseURL)
	}
	if base.Scheme != "http" && base.Scheme != "https" {
		return "", fmt.Errorf("jaeger URL %q: scheme must be http or https", q.BaseURL)
	}
	service := q.Service
	if service == "" {
		service = "ccproxy"
	}
	now := time.Now
	if q.Now != nil {
		now = q.Now
	}
	v := url.Values{}
	v.Set("service", service)
	v.Set("operation", operation)
	// Without start, Jaeger looks back only its configured default
	// (typically days); start at the epoch to see everything kept.
	start := int64(0)
	if !since.IsZero() {
		start = max(since.UnixMicro(), 0)
	}
	v.Set("start", strconv.FormatInt(start, 10))
	v.Set("end", strconv.FormatInt(now().UnixMicro(), 10))
	if q.Limit > 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	if mode != "" {
		tags, err := json.Marshal(map[string]string{string(trace.FailureMode): mode})
		if err != nil {
			return "", err
		}
		v.Set("tags", string(tags))
	}
	base.Path += "/api/traces"
	base.RawQuery = v.Encode()
	return base.String(), nil
}

// FetchJaeger reads the connection spans of the traces q selects and calls
// fn for each connection, counted as Reader counts them: the parentless
// connection spans of a trace, or, when it has none (only the in-cluster
// tunnel end's spans were exported there), its earliest one.
//
// Then, as Reader.Flush does, the attempts the relay folded: a second
// query fetches the run summaries (trace.SpanRun, see JaegerQuery for its
// time range and Limit), and each run of which a connection span was
// fetched has the attempts its latest summary counts and no fetched span
// stands for reported as Connection{Folded: true}, counted in
// ReadStats.Folded (with q.Mode, only those of that mode). A summary of a
// run none of whose connection spans were fetched (Limit or Since left
// them out, or q.Mode matched none) adds nothing, so that a limited query
// counts whole runs and no more. A malformed summary is skipped and
// recorded in the stats like a malformed span.
func FetchJaeger(ctx context.Context, q JaegerQuery, fn func(Connection)) (ReadStats, error) {
	cu, err := q.URL()
	if err != nil {
		return ReadStats{}, err
	}
	su, err := q.summaryURL()
	if err != nil {
		return ReadStats{}, err
	}
	conns, err := q.get(ctx, cu)
	if err != nil {
		return ReadStats{}, err
	}
	sums, err := q.get(ctx, su)
	if err != nil {
		return ReadStats{}, fmt.Errorf("run summaries: %w", err)
	}
	return readJaeger(conns, sums, q.Mode, maxFoldedPerRun, fn), nil
}

// get runs one /api/traces request and returns its traces.
func (q JaegerQuery) get(ctx context.Context, u string) ([]jaegerTrace, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("jaeger request: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	client := q.Client
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("querying jaeger: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJaegerResponse))
	if err != nil {
		return nil, fmt.Errorf("reading jaeger response: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("jaeger answered %s: %s", resp.Status, strings.TrimSpace(string(body[:min(len(body), 300)])))
	}
	var jr jaegerResponse
	if err := json.Unmarshal(body, &jr); err != nil {
		return nil, fmt.Errorf("decoding jaeger response: %w", err)
	}
	if len(jr.Errors) > 0 {
		return nil, fmt.Errorf("jaeger reported an error: %d %s", jr.Errors[0].Code, jr.Errors[0].Msg)
	}
	return jr.Data, nil
}

// readJaeger counts the connections in conns, the connection query's
// traces, and then the folded attempts of their runs that the summaries
// in sums, the summary query's traces, count (see FetchJaeger); with
// mode set only connections of that mode. Each run adds at most
// maxFolded folded attempts.
func readJaeger(conns, sums []jaegerTrace, mode string, maxFolded int, fn func(Connection)) ReadStats {
	var st ReadStats
	// The fetched connection spans of each run, by its first connection
	// span, as Reader keeps them.
	ws := map[spanRef][]written{}
	for _, t := range conns {
		var roots, nested []Connection
		for _, sp := range t.Spans {
			st.Spans++
			c, ok, root, err := connectionFromJaeger(sp)
			c.trace, c.span = jaegerTraceID(t.TraceID), jaegerSpanID(sp.SpanID)
			if err != nil {
				st.skip("jaeger trace "+t.TraceID, 0, fmt.Errorf("span %s: %w", sp.SpanID, err))
				continue
			}
			if !ok {
				continue
			}
			if k, ok := c.runKey(); ok {
				ws[k] = append(ws[k], c.written())
			}
			if root {
				roots = append(roots, c)
			} else {
				nested = append(nested, c)
			}
		}
		if len(roots) == 0 && len(nested) > 0 {
			earliest := nested[0]
			for _, c := range nested[1:] {
				if c.Start.Before(earliest.Start) {
					earliest = c
				}
			}
			roots = append(roots, earliest)
		}
		for _, c := range roots {
			// Jaeger's tag filter selects traces, not spans: drop the
			// other connections of a matching trace.
			if mode == "" || c.Mode == mode {
				st.Connections++
				fn(c)
			}
		}
	}
	// Each fetched run's latest summary (summaries are cumulative).
	latest := map[spanRef]runSummary{}
	for _, t := range sums {
		for _, sp := range t.Spans {
			st.Spans++
			sum, ok, err := summaryFromJaeger(sp)
			if err != nil {
				st.skip("jaeger trace "+t.TraceID, 0, fmt.Errorf("span %s: %w", sp.SpanID, err))
				continue
			}
			if !ok {
				continue
			}
			st.RunSummaries++
			if _, fetched := ws[sum.first]; !fetched {
				continue
			}
			if prev, ok := latest[sum.first]; !ok || sum.newer(prev) {
				latest[sum.first] = sum
			}
		}
	}
	emitFolded(latest, ws, maxFolded, func(c Connection) {
		if mode == "" || c.Mode == mode {
			st.Connections++
			st.Folded++
			fn(c)
		}
	})
	if mode == "" {
		// With a mode, the runs' attempts of other modes are missing by
		// design: gaps say nothing then.
		st.UnsummarizedRuns = unsummarized(ws, latest)
	}
	st.Traces = len(conns) + len(sums)
	return st
}

// connectionFromJaeger reduces a connection span; root reports whether it
// has no parent (no CHILD_OF reference).
func connectionFromJaeger(sp jaegerSpan) (c Connection, ok, root bool, err error) {
	if sp.OperationName != trace.SpanConnection {
		return Connection{}, false, false, nil
	}
	root = true
	for _, r := range sp.References {
		if r.RefType == "CHILD_OF" {
			root = false
		}
	}
	c = Connection{
		Start:    time.UnixMicro(sp.StartTime).UTC(),
		Duration: time.Duration(sp.Duration) * time.Microsecond,
	}
	for _, tag := range sp.Tags {
		switch attribute.Key(tag.Key) {
		case trace.FailureMode:
			c.Mode = tagString(tag)
		case trace.FailureDetail:
			c.Detail = tagString(tag)
		case trace.UpstreamAddress:
			c.Upstream = tagString(tag)
		case trace.UpstreamFirstByteMS:
			f, err := tagFloat(tag)
			if err != nil {
				return Connection{}, false, false, fmt.Errorf("tag %s: %w", tag.Key, err)
			}
			c.FirstByteMS, c.HasFirstByte = f, true
		case trace.BytesClientToUp:
			if f, err := tagFloat(tag); err == nil && f >= 0 && f < 1<<62 {
				c.ClientBytes, c.HasClientBytes = int64(f), true
			}
		case trace.ClientAddress:
			c.Client = tagString(tag)
		case trace.RunAttempt:
			if f, err := tagFloat(tag); err == nil && f >= 1 && f < 1<<31 {
				c.Attempt = int(f)
			}
		}
	}
	if c.Attempt > 1 {
		// Jaeger shows a span link as a FOLLOWS_FROM reference.
		for _, r := range sp.References {
			if r.RefType == "FOLLOWS_FROM" {
				c.runFirst = spanRef{jaegerTraceID(r.TraceID), jaegerSpanID(r.SpanID)}
				break
			}
		}
	}
	return c, true, root, nil
}

// jaegerTraceID reads a trace id as Jaeger writes it (hex, leading zeros
// possibly dropped); an unreadable one is the empty id.
func jaegerTraceID(s string) pcommon.TraceID {
	id, _ := ParseTraceID(s)
	return id
}

// jaegerSpanID reads a span id as Jaeger writes it.
func jaegerSpanID(s string) pcommon.SpanID {
	var id pcommon.SpanID
	s = strings.ToLower(strings.TrimSpace(s))
	if s == "" || len(s) > 2*len(id) {
		return id
	}
	b, err := hex.DecodeString(strings.Repeat("0", 2*len(id)-len(s)) + s)
	if err == nil {
		copy(id[:], b)
	}
	return id
}

// tagString renders any tag value as text (strings unquoted).
func tagString(t jaegerTag) string {
	return jsonText(t.Value)
}

// jsonText renders a JSON value as text: a string unquoted, anything else
// as its JSON.
func jsonText(v json.RawMessage) string {
	var s string
	if json.Unmarshal(v, &s) == nil {
		return s
	}
	return string(v)
}

// tagFloat reads an int64 or float64 tag; Jaeger writes both as JSON numbers
// (and some versions int64 as a string, to keep precision).
func tagFloat(t jaegerTag) (float64, error) {
	f, ok := jsonNumber(t.Value)
	if !ok {
		return 0, fmt.Errorf("value %s of type %s is not a number", clip(t.Value), t.Type)
	}
	return f, nil
}

// jsonNumber reads a JSON number, or a string holding one.
func jsonNumber(v json.RawMessage) (float64, bool) {
	var f float64
	if err := json.Unmarshal(v, &f); err == nil {
		return f, true
	}
	var s string
	if err := json.Unmarshal(v, &s); err == nil {
		f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
		return f, err == nil
	}
	return 0, false
}

// tagBool reads a bool tag (a JSON bool, or a string "true"); anything
// else is false.
func tagBool(t jaegerTag) bool {
	var b bool
	if json.Unmarshal(t.Value, &b) == nil {
		return b
	}
	var s string
	if json.Unmarshal(t.Value, &s) == nil {
		b, _ = strconv.ParseBool(strings.TrimSpace(s))
	}
	return b
}

// tagArray reads an array tag. Jaeger has no array tags: it renders an
// OTLP array attribute as a tag of type "string" whose value is the array
// in JSON, `"[\"lb_closed_early\",\"ok\"]"` for a string array and
// `"[2981,19]"` for an int array (checked with Jaeger v1.76.0, the version
// scripts/jaeger.sh builds). The value as a JSON array itself is taken
// too.
func tagArray(t jaegerTag) ([]json.RawMessage, error) {
	v := []byte(t.Value)
	var s string
	if json.Unmarshal(v, &s) == nil {
		v = []byte(s)
	}
	var a []json.RawMessage
	if err := json.Unmarshal(v, &a); err != nil {
		return nil, fmt.Errorf("tag %s: value %s of type %s is not an array", t.Key, clip(t.Value), t.Type)
	}
	return a, nil
}

// tagArrayOf reads tag as an array (tagArray) whose elements conv reads;
// what names an element's kind for the error.
func tagArrayOf[T any](tag jaegerTag, what string, conv func(json.RawMessage) (T, bool)) ([]T, error) {
	vals, err := tagArray(tag)
	if err != nil {
		return nil, err
	}
	out := make([]T, 0, len(vals))
	for _, v := range vals {
		x, ok := conv(v)
		if !ok {
			return nil, fmt.Errorf("tag %s: %s is not %s", tag.Key, clip(v), what)
		}
		out = append(out, x)
	}
	return out, nil
}

// clip shortens a value quoted in an error message.
func clip(v json.RawMessage) string {
	if len(v) > 60 {
		return string(v[:60]) + "…"
	}
	return string(v)
}

// summaryFromJaeger reduces a trace.SpanRun span from Jaeger's JSON as
// summaryFromSpan does an OTLP one (summaryFields.summary): the link to
// the run's first connection span is a FOLLOWS_FROM reference, the arrays
// are JSON in string tags (tagArray). ok is false for other spans; err
// says what is wrong with a malformed summary.
func summaryFromJaeger(sp jaegerSpan) (sum runSummary, ok bool, err error) {
	if sp.OperationName != trace.SpanRun {
		return runSummary{}, false, nil
	}
	f := summaryFields{start: time.UnixMicro(sp.StartTime).UTC()}
	f.end = f.start
	if d := time.Duration(sp.Duration) * time.Microsecond; d > 0 {
		f.end = f.start.Add(d)
	}
	for _, r := range sp.References {
		if r.RefType == "FOLLOWS_FROM" {
			f.first = spanRef{jaegerTraceID(r.TraceID), jaegerSpanID(r.SpanID)}
			break
		}
	}
	for _, tag := range sp.Tags {
		switch attribute.Key(tag.Key) {
		case trace.ClientAddress:
			f.client = tagString(tag)
		case trace.UpstreamAddress:
			f.upstream = tagString(tag)
		case trace.RunAttempts:
			v, err := tagFloat(tag)
			f.attempts, f.hasAttempts, f.attemptsOK = v, true, err == nil
		case trace.RunFinal:
			f.final = tagBool(tag)
		case trace.RunModes:
			f.hasModes = true
			f.modes, err = tagArrayOf(tag, "text", func(v json.RawMessage) (string, bool) { return jsonText(v), true })
			f.err = cmp.Or(f.err, err)
		case trace.RunModeCounts:
			f.hasCounts = true
			f.counts, err = tagArrayOf(tag, "a number", jsonNumber)
			f.err = cmp.Or(f.err, err)
		}
	}
	sum, err = f.summary()
	if err != nil {
		return runSummary{}, false, err
	}
	return sum, true, nil
}
