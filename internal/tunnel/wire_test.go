package tunnel

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/quic-go/quic-go"

	"github.com/ccproxy-dev/ccproxy/internal/failure"
)

const testTraceParent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

func TestHeaderRoundTrip(t *testing.T) {
	tests := []Header{
		{},
		{Route: "userapi"},
		{Route: "a", TraceParent: testTraceParent},
		{Route: strings.Repeat("r", 63), TraceParent: testTraceParent, TraceState: "vendor=opaque,other=x"},
		{TraceState: strings.Repeat("k=v,", 128)},
	}
	for _, h := range tests {
		b, err := h.Marshal()
		if err != nil {
			t.Fatalf("Marshal(%+v): %v", h, err)
		}
		// What follows the header on the stream must stay unread.
		r := bytes.NewReader(append(b, "relayed bytes"...))
		got, err := ReadHeader(r)
		if err != nil {
			t.Fatalf("ReadHeader(%+v): %v", h, err)
		}
		if got != h {
			t.Errorf("round trip: got %+v, want %+v", got, h)
		}
		rest, _ := io.ReadAll(r)
		if string(rest) != "relayed bytes" {
			t.Errorf("ReadHeader consumed relayed bytes: left %q", rest)
		}
	}
}

func TestHeaderMarshalRejects(t *testing.T) {
	tests := map[string]Header{
		"address as route":   {Route: "10.0.0.1:22"},
		"host:port as route": {Route: "coordinator:1313"},
		"slash in route":     {Route: "a/b"},
		"long route":         {Route: strings.Repeat("r", 64)},
		"control in parent":  {TraceParent: "00-\n"},
		"long tracestate":    {TraceState: strings.Repeat("x", 513)},
		"non-ascii state":    {TraceState: "k=\xff"},
	}
	for name, h := range tests {
		if _, err := h.Marshal(); err == nil {
			t.Errorf("%s: Marshal(%+v) succeeded", name, h)
		}
	}
}

// rawHeader builds a header without Marshal's checks, as a hostile or
// buggy client could.
func rawHeader(version byte, route, tp, ts string) []byte {
	body := []byte{byte(len(route))}
	body = append(body, route...)
	body = append(body, byte(len(tp)))
	body = append(body, tp...)
	body = append(body, byte(len(ts)>>8), byte(len(ts)))
	body = append(body, ts...)
	return append([]byte{version, byte(len(body) >> 8), byte(len(body))}, body...)
}

func TestReadHeaderRejects(t *testing.T) {
	tests := map[string][]byte{
		"empty":            nil,
		"short prefix":     {1, 0},
		"version 2":        rawHeader(2, "a", "", ""),
		"version 0":        rawHeader(0, "a", "", ""),
		"address as route": rawHeader(1, "127.0.0.1:1313", "", ""),
		"too long body":    {1, 0x04, 0x01},
		"truncated body":   rawHeader(1, "abc", "", "")[:6],
		"trailing bytes": func() []byte {
			b := rawHeader(1, "a", "", "")
			b = append(b, 'x')
			b[2]++
			return b
		}(),
		"length past body": {1, 0, 3, 5, 'a', 0},
		"control chars":    rawHeader(1, "a", "00-\x00", ""),
	}
	for name, b := range tests {
		if h, err := ReadHeader(bytes.NewReader(b)); err == nil {
			t.Errorf("%s: ReadHeader accepted %x as %+v", name, b, h)
		}
	}
}

func TestVerdictRoundTrip(t *testing.T) {
	tests := []struct {
		id   quic.StreamID
		in   Verdict
		want Verdict
	}{
		{0, Verdict{Mode: failure.OK}, Verdict{Mode: failure.OK}},
		{4, Verdict{Mode: failure.LBClosedEarly, Detail: "The upstream closed.", Upstream: "coordinator:1313"},
			Verdict{Mode: failure.LBClosedEarly, Detail: "The upstream closed.", Upstream: "coordinator:1313"}},
		{1<<62 - 1, Verdict{Mode: "some_future_mode", Detail: "line\nbreak\x00"},
			Verdict{Mode: "some_future_mode", Detail: "line break "}},
		{8, Verdict{Mode: failure.PolicyHashMismatch, Detail: strings.Repeat("é", 3000)},
			Verdict{Mode: failure.PolicyHashMismatch, Detail: strings.Repeat("é", 2048)}},
		{12, Verdict{Mode: failure.OK, Upstream: "bad\nupstream"}, Verdict{Mode: failure.OK}},
	}
	for _, tt := range tests {
		msg, err := marshalVerdict(tt.id, tt.in)
		if err != nil {
			t.Fatalf("marshalVerdict(%d, %+v): %v", tt.id, tt.in, err)
		}
		typ, body, err := readMsg(bytes.NewReader(msg))
		if err != nil || typ != msgVerdict {
			t.Fatalf("readMsg: type %d, err %v", typ, err)
		}
		id, got, err := parseVerdict(body)
		if err != nil {
			t.Fatalf("parseVerdict: %v", err)
		}
		if id != tt.id || got != tt.want {
			t.Errorf("round trip: got %d %+v, want %d %+v", id, got, tt.id, tt.want)
		}
	}
}

func TestVerdictRejects(t *testing.T) {
	if _, err := marshalVerdict(0, Verdict{Mode: "Not A Mode"}); err == nil {
		t.Error("marshalVerdict accepted a mode with spaces")
	}
	if _, err := marshalVerdict(0, Verdict{}); err == nil {
		t.Error("marshalVerdict accepted an empty mode")
	}
	good, _ := marshalVerdict(4, Verdict{Mode: failure.OK, Detail: "d", Upstream: "u:1"})
	body := good[3:]
	tests := map[string][]byte{
		"empty":         nil,
		"short id":      body[:7],
		"trailing":      append(append([]byte{}, body...), 0),
		"truncated":     body[:len(body)-1],
		"mode spaces":   append(append([]byte{0, 0, 0, 0, 0, 0, 0, 4, 3}, "a b"...), 0, 0, 0),
		"empty mode":    {0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 0},
		"id too large":  append([]byte{0x40, 0, 0, 0, 0, 0, 0, 0, 2}, 'o', 'k', 0, 0, 0),
		"bad upstream":  append(append([]byte{0, 0, 0, 0, 0, 0, 0, 4, 2}, "ok"...), 0, 0, 1, '\n'),
		"detail > 4096": append(append(append([]byte{0, 0, 0, 0, 0, 0, 0, 4, 2}, "ok"...), 0x10, 0x01), append(bytes.Repeat([]byte{'a'}, 4097), 0)...),
	}
	for name, b := range tests {
		if _, v, err := parseVerdict(b); err == nil {
			t.Errorf("%s: parseVerdict accepted %x as %+v", name, b, v)
		}
	}
}

func TestReadMsg(t *testing.T) {
	hello, _ := marshalMsg(msgHello, []byte{HeaderVersion})
	goaway, _ := marshalMsg(msgGoAway, nil)
	unknown, _ := marshalMsg(200, []byte("future"))
	r := bytes.NewReader(append(append(append([]byte{}, hello...), unknown...), goaway...))
	var types []msgType
	for {
		typ, body, err := readMsg(r)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if typ == msgHello {
			if err := parseHello(body); err != nil {
				t.Errorf("parseHello: %v", err)
			}
		}
		types = append(types, typ)
	}
	if len(types) != 3 || types[0] != msgHello || types[1] != 200 || types[2] != msgGoAway {
		t.Errorf("types = %v", types)
	}
	if _, _, err := readMsg(bytes.NewReader([]byte{2, 0xff, 0xff})); err == nil {
		t.Error("readMsg accepted a 64 KiB body")
	}
	if _, _, err := readMsg(bytes.NewReader([]byte{2, 0, 5, 1})); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("truncated body: err = %v, want unexpected EOF", err)
	}
	if _, err := marshalMsg(msgVerdict, make([]byte, maxControlBody+1)); err == nil {
		t.Error("marshalMsg accepted an oversized body")
	}
	if err := parseHello([]byte{2}); err == nil {
		t.Error("parseHello accepted version 2")
	}
	if err := parseHello(nil); err == nil {
		t.Error("parseHello accepted an empty body")
	}
}

func TestValidRouteName(t *testing.T) {
	for _, ok := range []string{"a", "userapi", "mesh-7777", "v1.2_x", strings.Repeat("z", 63)} {
		if err := ValidRouteName(ok); err != nil {
			t.Errorf("ValidRouteName(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", "a:1", "[::1]:80", "a b", "a/b", "ä", strings.Repeat("z", 64)} {
		if err := ValidRouteName(bad); err == nil {
			t.Errorf("ValidRouteName(%q) accepted", bad)
		}
	}
}

func FuzzReadHeader(f *testing.F) {
	good, _ := Header{Route: "userapi", TraceParent: testTraceParent, TraceState: "a=b"}.Marshal()
	f.Add(good)
	f.Add(rawHeader(1, "", "", ""))
	f.Add(rawHeader(1, "x:1", "", ""))
	f.Add([]byte{1, 0xff, 0xff})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := ReadHeader(bytes.NewReader(b))
		if err != nil {
			return
		}
		if h.Route != "" && ValidRouteName(h.Route) != nil {
			t.Fatalf("accepted route %q", h.Route)
		}
		// Whatever parses re-encodes to the bytes it came from.
		out, err := h.Marshal()
		if err != nil {
			t.Fatalf("accepted header does not marshal: %v", err)
		}
		if !bytes.HasPrefix(b, out) {
			t.Fatalf("re-encoding differs: %x vs %x", out, b)
		}
	})
}

func FuzzParseVerdict(f *testing.F) {
	for _, v := range []Verdict{{Mode: failure.OK}, {Mode: failure.IssuerTimeout, Detail: "waited 10s", Upstream: "c:1313"}} {
		m, _ := marshalVerdict(4, v)
		f.Add(m[3:])
	}
	f.Add([]byte{})
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 0, 1, 'a', 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		id, v, err := parseVerdict(b)
		if err != nil {
			return
		}
		if !validMode(string(v.Mode)) || !printable(v.Upstream) || len(v.Detail) > 3*maxDetail {
			t.Fatalf("accepted %+v", v)
		}
		for _, r := range v.Detail {
			if r < 0x20 || r == 0x7f {
				t.Fatalf("control character in detail %q", v.Detail)
			}
		}
		if _, err := marshalVerdict(id, v); err != nil {
			t.Fatalf("accepted verdict does not marshal: %v", err)
		}
	})
}

func FuzzReadMsg(f *testing.F) {
	hello, _ := marshalMsg(msgHello, []byte{1})
	f.Add(hello)
	f.Add([]byte{3, 0, 0})
	f.Add([]byte{2, 0x20, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		r := bytes.NewReader(b)
		for {
			_, body, err := readMsg(r)
			if err != nil {
				return
			}
			if len(body) > maxControlBody {
				t.Fatalf("body of %d bytes", len(body))
			}
		}
	})
}
