package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ccproxy-dev/ccproxy/attest"
	"github.com/ccproxy-dev/ccproxy/internal/demo"
	"github.com/ccproxy-dev/ccproxy/internal/watch"
)

func newDemoCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Drive every failure mode through a relay in front of a simulated Coordinator",
		Long: `demo starts two simulated Contrast Coordinators (SNP and TDX, with test-signed
evidence) and a ccproxy relay in front of them on loopback ports, drives one
scenario per field failure through the relay with a Contrast-CLI-like client,
and prints what the client saw next to the failure mode ccproxy named.
Nothing else needs to run. It exits 1 if any scenario was misnamed.`,
		Example: `  ccproxy demo
  ccproxy demo --scenario policy --trace-file demo.jsonl && ccproxy analyze demo.jsonl`,
		Args: cobra.NoArgs,
		RunE: runDemo,
	}
	cmd.Flags().String("trace-file", "ccproxy-demo-traces.jsonl", "write the demo's spans here as OTLP/JSON lines (empty: none)")
	cmd.Flags().String("scenario", "", "run only scenarios whose name or wanted mode contains this text")
	return cmd
}

func runDemo(cmd *cobra.Command, _ []string) error {
	traceFile, _ := cmd.Flags().GetString("trace-file")
	filter, _ := cmd.Flags().GetString("scenario")
	var scenarios []demo.Scenario
	for _, sc := range demo.Scenarios() {
		if filter == "" || strings.Contains(sc.Name, filter) || strings.Contains(string(sc.Want), filter) {
			scenarios = append(scenarios, sc)
		}
	}
	if len(scenarios) == 0 {
		return usageErrorf("--scenario %q matches no scenario", filter)
	}
	relayCfg := &relayConfig{probe: true, probeCache: 0}
	rep, err := demo.Run(cmd.Context(), demo.Config{
		Out:       cmd.OutOrStdout(),
		TraceFile: traceFile,
		Scenarios: scenarios,
		Checks: func(opts attest.Options) (watch.CertChecker, watch.Refiner) {
			ev := &evidence{opts: opts}
			return ev.certChecker(), ev.refiner(relayCfg)
		},
		Probe: demoProber(),
	})
	if err != nil {
		return err
	}
	if n := rep.Failed(); n > 0 {
		return checkFailed(fmt.Errorf("%d of %d scenarios misnamed", n, len(rep.Rows)))
	}
	return nil
}
