package proxy

import (
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestBytesLayerImportsNothingAbove keeps the data flowing one way: the
// relay (bytes) imports neither what the bytes mean (proxy/inspect) nor
// any of ccproxy's internal packages; they import it.
func TestBytesLayerImportsNothingAbove(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		af, err := parser.ParseFile(fset, f, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range af.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			if strings.HasPrefix(path, "github.com/ccproxy-dev/ccproxy/") {
				t.Errorf("%s imports %s: package proxy must not depend on the layers above it", f, path)
			}
		}
	}
}
