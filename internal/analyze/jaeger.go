package analyze

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
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
	// ccproxy.failure_mode, so only those traces are transferred.
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
	v.Set("operation", SpanConnection)
	// Without start, Jaeger looks back only its configured default
	// (typically days); start at the epoch to see everything kept.
	v.Set("start", strconv.FormatInt(max(q.Since.UnixMicro(), 0), 10))
	v.Set("end", strconv.FormatInt(now().UnixMicro(), 10))
	if q.Limit > 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	if q.Mode != "" {
		tags, err := json.Marshal(map[string]string{AttrFailureMode: q.Mode})
		if err != nil {
			return "", err
		}
		v.Set("tags", string(tags))
	}
	base.Path += "/api/traces"
	base.RawQuery = v.Encode()
	return base.String(), nil
}

// FetchJaeger reads the ccproxy.connection root spans of the traces q
// selects and calls fn for each.
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
		for _, sp := range t.Spans {
			st.Spans++
			c, ok, err := connectionFromJaeger(sp)
			if err != nil {
				st.skip("jaeger trace "+t.TraceID, 0, fmt.Errorf("span %s: %w", sp.SpanID, err))
				continue
			}
			// Jaeger's tag filter selects traces, not spans: drop the
			// other connections of a matching trace.
			if ok && (q.Mode == "" || c.Mode == q.Mode) {
				st.Connections++
				fn(c)
			}
		}
	}
	st.Traces = len(jr.Data)
	return st, nil
}

// connectionFromJaeger reduces a root ccproxy.connection span (one without a
// CHILD_OF reference).
func connectionFromJaeger(sp jaegerSpan) (Connection, bool, error) {
	if sp.OperationName != SpanConnection {
		return Connection{}, false, nil
	}
	for _, r := range sp.References {
		if r.RefType == "CHILD_OF" {
			return Connection{}, false, nil
		}
	}
	c := Connection{
		Start:    time.UnixMicro(sp.StartTime).UTC(),
		Duration: time.Duration(sp.Duration) * time.Microsecond,
	}
	for _, tag := range sp.Tags {
		switch tag.Key {
		case AttrFailureMode:
			c.Mode = tagString(tag)
		case AttrDetail:
			c.Detail = tagString(tag)
		case AttrUpstream:
			c.Upstream = tagString(tag)
		case AttrFirstByteMS:
			f, err := tagFloat(tag)
			if err != nil {
				return Connection{}, false, fmt.Errorf("tag %s: %w", tag.Key, err)
			}
			c.FirstByteMS, c.HasFirstByte = f, true
		}
	}
	return c, true, nil
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
