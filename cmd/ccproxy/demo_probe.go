package main

import (
	"context"

	"github.com/ccproxy-dev/ccproxy/attest"
	"github.com/ccproxy-dev/ccproxy/internal/demo"
	"github.com/ccproxy-dev/ccproxy/internal/failure"
	"github.com/ccproxy-dev/ccproxy/internal/probe"
)

// demoProber is how the demo asks a Coordinator for its state: the probe
// command's code path.
func demoProber() demo.Prober {
	return func(ctx context.Context, addr string, opts attest.Options, manifest []byte) (failure.Mode, string, error) {
		rep, err := probe.Run(ctx, addr, probe.Config{Attest: opts, Manifest: manifest})
		if err != nil {
			return "", "", err
		}
		return rep.Mode, rep.Detail, nil
	}
}
