package explain

import (
	"slices"
	"strings"
	"testing"

	"github.com/ccproxy-dev/ccproxy/internal/failure"
)

// TestCLITextRoundTrip: each mode's CLI text, its placeholders filled in,
// is what Explain names that mode (first or as an alternative).
func TestCLITextRoundTrip(t *testing.T) {
	fill := strings.NewReplacer(
		"<hex>", "ab12cd",
		"<host>", "coordinator.default.svc",
		"<port>", "1313",
		"<time>", "2025-06-01T12:00:00Z",
		"<cause>", "report signature verification error: x509: ECDSA verification failure",
		"<tcb>", "Fmc:0 BlSpl:7 TeeSpl:0 SnpSpl:14 UcodeSpl:72",
		"<alert>", "bad certificate",
	)
	for _, m := range failure.All {
		text := CLIText(m)
		if text == "" {
			continue
		}
		fs := Explain(fill.Replace(text))
		if len(fs) == 0 {
			t.Errorf("%s: Explain recognises nothing in its CLI text %q", m, text)
			continue
		}
		if fs[0].Mode != string(m) && !slices.Contains(fs[0].Alternatives, string(m)) {
			t.Errorf("%s: Explain names its CLI text %q %s (alternatives %v)", m, text, fs[0].Mode, fs[0].Alternatives)
		}
	}
	for _, m := range []failure.Mode{failure.OK, failure.ClientAborted, failure.UpstreamReset, failure.Mode("no_such_mode")} {
		if got := CLIText(m); got != "" {
			t.Errorf("CLIText(%s) = %q, want none", m, got)
		}
	}
	// The modes a CLI retries have a text.
	for _, m := range []failure.Mode{failure.LBClosedEarly, failure.IssuerTimeout} {
		if CLIText(m) == "" {
			t.Errorf("CLIText(%s) is empty", m)
		}
	}
}
