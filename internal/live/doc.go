// Package live serves the relay's own page (`--ui-listen`): what the relay
// sees now, without a tracing backend. It shows the connections open per
// listener and upstream, the CLI runs in progress and recent ones (attempts,
// steps, what the CLI printed and what to do), counts per failure mode over
// the last minutes, and, for a recent connection, its waterfall drawn by
// `ccproxy analyze --output html`'s renderer. GET /api/v1/state has the
// same data as JSON, in analyze's shapes.
//
//	rec := live.NewRecorder(live.Limits{}) // the rings: fixed memory
//	tp, err := trace.Setup(ctx, trace.Config{File: path, Processors: []sdktrace.SpanProcessor{rec}})
//	srv, err := live.New(live.Config{Recorder: rec, Routes: routes, Metrics: metrics.Handler(), Runs: tracker.Snapshot})
//	go srv.Serve(ctx, ln) // until ctx ends
//
// Its source is the trace itself: Recorder is a span processor on the
// relay's tracer provider that keeps the latest connection spans, their
// child spans and run summaries in rings of fixed size, and the page
// converts them (trace.ToPdata) and reads them with package analyze when
// someone asks. Nothing is kept per connection beyond the rings, and
// without --ui-listen there is no Recorder at all. Counts come from the
// relay's admin metrics (exact while internal/runs folds attempts out of
// the trace), live attempt counts from the run tracker's snapshot.
//
// HTML, CSS and JavaScript are embedded (no external asset): the page works
// offline and through `kubectl port-forward`. It polls the state every
// second.
package live
