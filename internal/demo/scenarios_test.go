package demo

import (
	"testing"

	"github.com/ccproxy-dev/ccproxy/integration/simulated/coordinator"
)

// TestEveryFaultHasAScenario: each simulator fault is driven through the
// relay by some scenario, so the demo's check that the CLI's printed error
// explains as the relay's mode (explainAgrees) covers every fault.
func TestEveryFaultHasAScenario(t *testing.T) {
	seen := map[coordinator.Fault]bool{}
	for _, sc := range Scenarios() {
		seen[sc.Fault] = true
		for _, f := range sc.FirstFaults {
			seen[f] = true
		}
	}
	for _, f := range coordinator.Faults() {
		if !seen[f] {
			t.Errorf("fault %s has no demo scenario", f)
		}
	}
}
