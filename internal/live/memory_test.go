package live

import (
	"context"
	"runtime"
	"strconv"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	oteltrace "go.opentelemetry.io/otel/trace"

	"github.com/ccproxy-dev/ccproxy/internal/failure"
	"github.com/ccproxy-dev/ccproxy/trace"
)

// fullConnection writes a connection the size of a relayed aTLS handshake's:
// 24 attributes and 16 record events on the connection span, and four
// child spans with a few attributes each (as internal/watch writes them).
func (r *relaySpans) fullConnection(i int) {
	tr := r.tp.Tracer()
	ctx, span := tr.Start(context.Background(), trace.SpanConnection, oteltrace.WithNewRoot())
	for _, name := range []string{trace.SpanUpstreamDial, trace.SpanTLSHandshake, trace.SpanAttestVerify, trace.SpanRelayStream} {
		_, c := tr.Start(ctx, name)
		c.SetAttributes(trace.DialDurationMS.Float64(0.4), trace.ErrorMessage.String("read: connection reset by peer"), trace.HandshakeMS.Float64(12.5))
		c.End()
	}
	for e := range 16 {
		span.AddEvent("tls.record", oteltrace.WithAttributes(trace.Direction.String("client_to_upstream"), trace.RecordType.Int(22),
			trace.RecordLength.Int(517), trace.StreamOffset.Int(e*517)))
	}
	attrs := []attribute.KeyValue{
		trace.FailureMode.String(string(failure.PolicyHashMismatch)),
		trace.FailureDetail.String("report field HOST_DATA is 07173084e5e8d6b4c1e2a1f5d9c3b7a8e6f4d2c0b9a8f7e6d5c4b3a2918070605 where the manifest expects ced5af63a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c"),
		trace.UpstreamAddress.String("coordinator:1313"), trace.ClientAddress.String("10.0.0." + strconv.Itoa(i%250)),
		trace.ClientPort.Int(40000 + i%20000), trace.ServerAddress.String("coordinator"), trace.ServerPort.Int(1313),
		trace.TLSServerName.String("c2VydmVyLW5hbWUtaW5kaWNhdGlvbi1ub25jZS1iYXNlNjQ="),
		trace.ATLSClientNonce.String("8d2e4f1a9b3c5d7e0f2a4b6c8d0e1f3a5b7c9d1e3f5a7b9c1d3e5f7a9b1c3d5e"), trace.ATLSNonceSource.String("alpn"),
		trace.TLSProtocolVersion.String("1.3"), trace.UpstreamFirstByteMS.Float64(812.4),
		trace.BytesClientToUp.Int64(2048), trace.BytesUpToClient.Int64(8192), trace.AttestPlatform.String("snp"),
		trace.AttestVerdict.String("rejected"),
		trace.AttestPolicyHash.String("07173084e5e8d6b4c1e2a1f5d9c3b7a8e6f4d2c0b9a8f7e6d5c4b3a291807060"),
		trace.AttestExpectedHash.String("ced5af63a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c"),
		trace.ClockOffsetMS.Float64(-12), trace.RunAttempt.Int(i + 1), trace.ListenAddress.String(":1313"),
		trace.TLSCipherSuite.String("TLS_AES_128_GCM_SHA256"), trace.TLSALPN.StringSlice([]string{"h2", "atls:v1:nonce:8d2e4f1a"}),
		trace.EndedBy.String("client"),
	}
	span.SetAttributes(attrs...)
	span.End()
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// TestRingMemoryBounded: the rings' memory stops growing once they are
// full (the page costs nothing per connection beyond them), and full rings
// of handshake-sized spans stay under the bound SECURITY.md states.
func TestRingMemoryBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("fills the rings several times over")
	}
	rs := newRelaySpans(t, Limits{})
	base := heapInUse()
	n := 0
	fill := func(conns int) {
		for range conns {
			rs.fullConnection(n)
			n++
		}
		for i := range conns / 8 {
			trace.WriteRunSummary(rs.tp.Tracer(), trace.RunSummary{Client: "10.0.0.5", Upstream: "coordinator:1313",
				Attempts: i, Folded: i, Modes: []string{"lb_closed_early", "issuer_timeout"}, Counts: []int64{int64(i), 1}, Outcome: "issuer_timeout"})
		}
	}
	// Each connection has four children: 4 × DefaultConnections fills
	// the connection ring four times, the children's twice.
	fill(4 * DefaultConnections)
	full := heapInUse()
	fill(8 * DefaultConnections)
	later := heapInUse()
	held := rs.rec.Held()
	if held.Connections != DefaultConnections || held.Children != DefaultChildren || held.Runs != DefaultRuns {
		t.Fatalf("rings not full: %+v", held)
	}
	used := int64(full) - int64(base)
	grew := int64(later) - int64(full)
	t.Logf("full rings (%d connection, %d child spans, %d run summaries): %.1f MiB; after %d more connections: %+.2f MiB",
		DefaultConnections, DefaultChildren, DefaultRuns, float64(used)/(1<<20), 8*DefaultConnections, float64(grew)/(1<<20))
	const bound = 8 << 20 // SECURITY.md: the page's rings hold at most 8 MiB
	if used > bound {
		t.Errorf("full rings use %d bytes, more than the stated %d", used, bound)
	}
	if grew > used/10+(256<<10) {
		t.Errorf("memory grew by %d bytes after the rings were full (full: %d): something is kept per connection", grew, used)
	}
}

// BenchmarkState: what one poll of the page costs with a full ring of
// handshake-sized connections (one poll a second per open tab): about 7 ms
// and 2.5 MB allocated on one core of the development machine.
func BenchmarkState(b *testing.B) {
	rs := newRelaySpans(b, Limits{})
	for i := range DefaultConnections {
		rs.fullConnection(i)
	}
	srv, err := New(Config{Recorder: rs.rec})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		_ = srv.State()
	}
}
