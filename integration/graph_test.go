package integration

import (
	"os/exec"
	"strings"
	"testing"
)

// TestProductDoesNotImportTestDoubles: the simulated Coordinator and CLI
// (integration/simulated) and the fake evidence signer (attest/attesttest)
// stand in for hardware in tests; the only product package allowed to
// import them is the demo (internal/demo), which runs them on purpose. A
// relay, probe or attest that imported them could trust a fake root.
func TestProductDoesNotImportTestDoubles(t *testing.T) {
	const mod = "github.com/ccproxy-dev/ccproxy/"
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}} {{join .Imports " "}}`, mod+"...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	doubles := []string{mod + "integration/simulated/", mod + "attest/attesttest"}
	allowed := []string{mod + "integration", mod + "bench/", mod + "internal/demo", mod + "attest/attesttest"}
	checked := 0
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		pkg, imports := fields[0], fields[1:]
		checked++
		if hasPrefix(pkg, allowed) {
			continue
		}
		for _, imp := range imports {
			if hasPrefix(imp, doubles) {
				t.Errorf("%s imports the test double %s", strings.TrimPrefix(pkg, mod), strings.TrimPrefix(imp, mod))
			}
		}
	}
	if checked < 20 {
		t.Fatalf("go list named only %d packages", checked)
	}
}

func hasPrefix(s string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}
