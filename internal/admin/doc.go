// Package admin owns ccproxy's admin endpoint and its metrics: /healthz
// (the process is alive), /readyz (the caller's readiness check passes) and
// /metrics (Prometheus text, from OpenTelemetry instruments exported on a
// registry of this package's own, never the global default one).
//
//	m, err := admin.NewMetrics(nil) // own provider and registry
//	if err != nil { ... }
//	defer m.Shutdown(context.Background())
//	srv := admin.New(":9090", m, func(ctx context.Context) error {
//		_, err := net.DefaultResolver.LookupHost(ctx, "coordinator")
//		return err
//	})
//	go srv.Serve(ctx) // returns when ctx ends
//
//	m.InitRoute(":1313", "coordinator:1313") // every series at 0 before the first connection
//	m.ConnOpened("coordinator:1313")
//	m.ConnClosed("coordinator:1313", failure.OK, 517, 4096)
//
// A fresh /metrics already has every ccproxy_* series that deploy/monitoring's
// dashboard and alerts read, at zero: InitRoute puts each configured route's
// label sets there (every failure mode of the contract, both directions, the
// listen address), NewMetrics the label-less ones (dropped spans, and the two
// latency histograms, which the OpenTelemetry SDK cannot create before their
// first observation, so this package's /metrics serves them empty until
// then).
//
// Every *Metrics method is safe on a nil receiver, so the relay calls them
// unconditionally whether or not an admin endpoint is configured.
package admin
