package analyze

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// attrNameLiteral matches an attribute or span name of ccproxy's traces
// spelled out in a string: "ccproxy.failure_mode", "tls.alert", "No
// ccproxy.connection spans", but not "s-tls" or "client → upstream".
var attrNameLiteral = regexp.MustCompile(`(?:^|[^\w.-])((?:ccproxy|tls|atls|attest|client|server|error)\.[a-z_][\w.]*)`)

func TestAttrNameLiteralMatcher(t *testing.T) {
	tests := []struct {
		s    string
		want bool
	}{
		{"ccproxy.failure_mode", true},
		{"ccproxy.connection", true},
		{"No ccproxy.connection spans%s", true},
		{"Issuer latency (ccproxy.upstream.first_byte_ms)", true},
		{"tls.alert", true},
		{"atls.client_nonce", true},
		{"attest.policy_hash", true},
		{"client.address", true},
		{"server.port", true},
		{"error.message", true},
		{"<h2>Attributes of ccproxy.connection</h2>", true},
		{"client → upstream", false},
		{"client_to_", false},
		{".s-tls { background:#b07aa1; }", false},
		{"writing analyze html: %w", false},
		{"ccproxy connections", false},
		{"github.com/ccproxy-dev/ccproxy/trace", false},
	}
	for _, tt := range tests {
		if got := attrNameLiteral.MatchString(tt.s); got != tt.want {
			t.Errorf("match %q = %v, want %v", tt.s, got, tt.want)
		}
	}
}

// TestAttributeNamesOnlyFromTrace keeps the attribute and span names in one
// place, package trace: analyze's reader, summary and HTML view use its
// constants and never spell a name out again, so that a renamed attribute
// cannot leave analyze reading a name nobody writes.
func TestAttributeNamesOnlyFromTrace(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	scanned := 0
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		src, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		f, err := parser.ParseFile(fset, name, src, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		scanned++
		ast.Inspect(f, func(n ast.Node) bool {
			lit, ok := n.(*ast.BasicLit)
			if !ok || lit.Kind != token.STRING {
				return true
			}
			s, err := strconv.Unquote(lit.Value)
			if err != nil {
				t.Errorf("%s: %v", fset.Position(lit.Pos()), err)
				return true
			}
			for i, line := range strings.Split(s, "\n") {
				for _, m := range attrNameLiteral.FindAllStringSubmatch(line, -1) {
					pos := fset.Position(lit.Pos())
					t.Errorf("%s:%d: the string spells out the attribute or span name %q; use the constant from package trace",
						pos.Filename, pos.Line+i, m[1])
				}
			}
			return true
		})
	}
	if scanned < 5 {
		t.Fatalf("scanned %d files; run from the package directory", scanned)
	}
}
