package analyze

import (
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

	"github.com/ccproxy-dev/ccproxy/trace"
)

// JaegerQuery selects traces from Jaeger's query API.
type JaegerQuery struct {
	// BaseURL is Jaeger's query endpoint, e.g. http://127.0.0.1:16686.
	BaseURL string
	// Service is the service name the spans were exported under
	// ("ccproxy" when empty).
	Service string
	// Limit is the most traces to fetch (Jaeger's own default, 100, when 0).
	Limit int
	// Since is the earliest start time (zero: from the Unix epoch).
	Since time.Time
	// Mode, when set, is passed to Jaeger as a tag filter on
	// trace.FailureMode, so only those traces are transferred.
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

// URL is the /api/traces request for q.
func (q JaegerQuery) URL() (string, error) {
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
	v.Set("operation", trace.SpanConnection)
	// Without start, Jaeger looks back only its configured default
	// (typically days); start at the epoch to see everything kept.
	v.Set("start", strconv.FormatInt(max(q.Since.UnixMicro(), 0), 10))
	v.Set("end", strconv.FormatInt(now().UnixMicro(), 10))
	if q.Limit > 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	if q.Mode != "" {
		tags, err := json.Marshal(map[string]string{string(trace.FailureMode): q.Mode})
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
func FetchJaeger(ctx context.Context, q JaegerQuery, fn func(Connection)) (ReadStats, error) {
	var st ReadStats
	u, err := q.URL()
	if err != nil {
		return st, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return st, fmt.Errorf("jaeger request: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	client := q.Client
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return st, fmt.Errorf("querying jaeger: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJaegerResponse))
	if err != nil {
		return st, fmt.Errorf("reading jaeger response: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("jaeger answered %s: %s", resp.Status, strings.TrimSpace(string(body[:min(len(body), 300)])))
	}
	var jr jaegerResponse
	if err := json.Unmarshal(body, &jr); err != nil {
		return st, fmt.Errorf("decoding jaeger response: %w", err)
	}
	if len(jr.Errors) > 0 {
		return st, fmt.Errorf("jaeger reported an error: %d %s", jr.Errors[0].Code, jr.Errors[0].Msg)
	}
	for _, t := range jr.Data {
		var roots, nested []Connection
		for _, sp := range t.Spans {
			st.Spans++
			c, ok, root, err := connectionFromJaeger(sp)
			c.trace, c.span = jaegerTraceID(t.TraceID), jaegerSpanID(sp.SpanID)
			switch {
			case err != nil:
				st.skip("jaeger trace "+t.TraceID, 0, fmt.Errorf("span %s: %w", sp.SpanID, err))
			case ok && root:
				roots = append(roots, c)
			case ok:
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
			if q.Mode == "" || c.Mode == q.Mode {
				st.Connections++
				fn(c)
			}
		}
	}
	st.Traces = len(jr.Data)
	return st, nil
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
	var s string
	if json.Unmarshal(t.Value, &s) == nil {
		return s
	}
	return string(t.Value)
}

// tagFloat reads an int64 or float64 tag; Jaeger writes both as JSON numbers
// (and some versions int64 as a string, to keep precision).
func tagFloat(t jaegerTag) (float64, error) {
	var f float64
	if err := json.Unmarshal(t.Value, &f); err == nil {
		return f, nil
	}
	var s string
	if err := json.Unmarshal(t.Value, &s); err == nil {
		return strconv.ParseFloat(s, 64)
	}
	return 0, fmt.Errorf("value %s of type %s is not a number", string(t.Value), t.Type)
}
