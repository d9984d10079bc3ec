package failure_test

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/ccproxy-dev/ccproxy/internal/failure"
)

// owners is the package that decides each mode (docs/verdict.md, "Who
// decides which mode"): the classifier what the bytes mean, attest what is
// wrong with the evidence, the probe the Coordinator's state and the
// version mismatch (which needs its two handshakes), verdict the tunnel's
// own failure.
var owners = map[failure.Mode]string{
	failure.ClientAborted:              "proxy/inspect",
	failure.ClientNotTLS:               "proxy/inspect",
	failure.UpstreamDNSFailure:         "proxy/inspect",
	failure.UpstreamRefused:            "proxy/inspect",
	failure.UpstreamDialTimeout:        "proxy/inspect",
	failure.UpstreamUnreachable:        "proxy/inspect",
	failure.LBClosedEarly:              "proxy/inspect",
	failure.IssuerTimeout:              "proxy/inspect",
	failure.IssuerError:                "proxy/inspect",
	failure.UpstreamNotTLS:             "proxy/inspect",
	failure.UnexpectedCertificate:      "attest",
	failure.NoMatchingValidator:        "attest",
	failure.EvidenceInvalid:            "attest",
	failure.ReportDataMismatch:         "attest",
	failure.PolicyHashMismatch:         "attest",
	failure.MeasurementMismatch:        "attest",
	failure.TCBMismatch:                "attest",
	failure.ReferenceValueMismatch:     "attest",
	failure.ClientRejectedCertificate:  "proxy/inspect",
	failure.UnsupportedATLSVersion:     "proxy/inspect",
	failure.ClockSkew:                  "attest",
	failure.CoordinatorVersionMismatch: "internal/probe",
	failure.TLSAlert:                   "proxy/inspect",
	failure.UpstreamReset:              "proxy/inspect",
	failure.CoordinatorRecoveryMode:    "internal/probe",
	failure.CoordinatorNoManifest:      "internal/probe",
	failure.ManifestMismatch:           "internal/probe",
	failure.CoordinatorAPIError:        "internal/probe",
	failure.TunnelUnavailable:          "internal/verdict",
	failure.RelayResourceExhausted:     "proxy/inspect",
	failure.ManifestInvalid:            "attest",
}

// allowed are packages that may name any mode, and why. Everything not
// scanned at all is listed in skipDirs.
var allowed = map[string]string{
	// explain reads text a user pastes (the Contrast CLI's, kubectl's,
	// ccproxy's own logs) and says which mode it shows: naming modes for
	// text is its whole job, and it decides no connection's verdict. Its
	// own table tests pin which text is which mode.
	"internal/explain": "names the mode of pasted text, not of a connection",
}

// skipDirs are trees of the module that are no product code: tools, test
// doubles and benchmarks may set any mode.
var skipDirs = []string{"tools", "integration", "bench", "internal/demo"}

// use is one place a mode is given as a value.
type use struct {
	pkg string // directory, relative to the module root
	pos string // file:line
}

// TestEachModeAssignedInOnePackage: a failure mode is decided in exactly
// one package (shared/STYLE.md, "A failure mode is decided in one place");
// everything else passes a Mode along. It parses every non-test file of the
// module and finds each place a mode constant is given as a value —
// assigned, returned, passed, put in a composite literal — as opposed to
// compared (==, !=, a switch case) or used as a lookup table's key.
func TestEachModeAssignedInOnePackage(t *testing.T) {
	root := moduleRoot(t)
	modPath := modulePath(t, root)
	uses := scanModule(t, root, modPath+"/internal/failure")

	var problems []string
	for _, m := range failure.All {
		if m == failure.OK {
			// ok is every source's "nothing wrong"; anyone may say it.
			continue
		}
		pkgs := map[string][]string{}
		for _, u := range uses[m] {
			if _, ok := allowed[u.pkg]; ok {
				continue
			}
			pkgs[u.pkg] = append(pkgs[u.pkg], u.pos)
		}
		want, ok := owners[m]
		if !ok {
			problems = append(problems, fmt.Sprintf("%s: no owner in this test's table; add the package that decides it", m))
			continue
		}
		if _, decided := pkgs[want]; len(pkgs) == 1 && decided {
			continue
		}
		var b strings.Builder
		fmt.Fprintf(&b, "%s: want assigned only in %s, assigned in %d package(s):", m, want, len(pkgs))
		for _, p := range sortedKeys(pkgs) {
			fmt.Fprintf(&b, "\n\t%s:", p)
			for _, pos := range pkgs[p] {
				fmt.Fprintf(&b, "\n\t\t%s", pos)
			}
		}
		problems = append(problems, b.String())
	}
	if len(problems) > 0 {
		t.Errorf("each failure mode must be assigned in exactly one package (docs/verdict.md); found:\n%s", strings.Join(problems, "\n"))
	}
	for pkg, why := range allowed {
		if !assignsAny(uses, pkg) {
			t.Errorf("%s is allowed to name any mode (%s) but names none: remove it from the allow-list", pkg, why)
		}
	}
}

// TestScannerTellsValuesFromComparisons pins what counts as assigning.
func TestScannerTellsValuesFromComparisons(t *testing.T) {
	const src = `package p

import f "example.com/m/internal/failure"

var texts = map[f.Mode]string{f.LBClosedEarly: "key, not assigned"}

type V struct{ Mode f.Mode }

func a(m f.Mode) (f.Mode, V, []f.Mode) {
	if m == f.IssuerError || f.TLSAlert != m {
		return f.OK, V{}, nil
	}
	switch m {
	case f.IssuerTimeout:
	}
	var x f.Mode
	x = f.UpstreamReset
	s := string(f.ClockSkew)
	_ = s
	take(f.ClientAborted)
	return x, V{Mode: (f.EvidenceInvalid)}, []f.Mode{f.TCBMismatch}
}

func take(f.Mode) {}
`
	fset := token.NewFileSet()
	file, err := parser.ParseFile(fset, "p.go", src, 0)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, a := range assignments(fset, file, "example.com/m/internal/failure") {
		got = append(got, string(a.mode))
	}
	want := []string{"upstream_reset", "clock_skew", "client_aborted", "evidence_invalid", "tcb_mismatch"}
	if !slices.Equal(got, want) {
		t.Errorf("assigned %v, want %v", got, want)
	}
}

func assignsAny(uses map[failure.Mode][]use, pkg string) bool {
	for _, us := range uses {
		for _, u := range us {
			if u.pkg == pkg {
				return true
			}
		}
	}
	return false
}

// scanModule returns, per mode, every place outside the skipped trees where
// it is given as a value.
func scanModule(t *testing.T, root, failurePath string) map[failure.Mode][]use {
	t.Helper()
	uses := map[failure.Mode][]use{}
	fset := token.NewFileSet()
	files := 0
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			name := d.Name()
			if rel != "." && (strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") || name == "testdata" || slices.Contains(skipDirs, rel)) {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		pkg := filepath.ToSlash(filepath.Dir(rel))
		if pkg == "internal/failure" {
			// The constants' own declarations and All.
			return nil
		}
		file, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		files++
		for _, a := range assignments(fset, file, failurePath) {
			pos := a.pos
			pos.Filename = rel
			uses[a.mode] = append(uses[a.mode], use{pkg: pkg, pos: fmt.Sprintf("%s:%d", pos.Filename, pos.Line)})
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 50 {
		t.Fatalf("scanned only %d files under %s: is that the module root?", files, root)
	}
	return uses
}

type assignment struct {
	mode failure.Mode
	pos  token.Position
}

// modeNames maps each constant's identifier to its mode: the constants are
// named like their values (failure.LBClosedEarly is "lb_closed_early"), and
// the test below checks that every mode has exactly one name.
var modeNames = func() map[string]failure.Mode {
	names := map[string]failure.Mode{}
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "failure.go", nil, 0)
	if err != nil {
		panic(err)
	}
	for _, decl := range f.Decls {
		gd, ok := decl.(*ast.GenDecl)
		if !ok || gd.Tok != token.CONST {
			continue
		}
		for _, spec := range gd.Specs {
			vs := spec.(*ast.ValueSpec)
			if id, ok := vs.Type.(*ast.Ident); !ok || id.Name != "Mode" {
				continue
			}
			for i, n := range vs.Names {
				lit, ok := vs.Values[i].(*ast.BasicLit)
				if !ok || lit.Kind != token.STRING {
					panic("failure.go: constant " + n.Name + " is not a string literal")
				}
				names[n.Name] = failure.Mode(strings.Trim(lit.Value, "\"`"))
			}
		}
	}
	return names
}()

func TestModeNamesCoverAll(t *testing.T) {
	seen := map[failure.Mode]bool{}
	for _, m := range modeNames {
		seen[m] = true
	}
	if len(modeNames) != len(failure.All) || len(seen) != len(failure.All) {
		t.Fatalf("failure.go declares %d Mode constants (%d values), All lists %d", len(modeNames), len(seen), len(failure.All))
	}
	for _, m := range failure.All {
		if !seen[m] {
			t.Errorf("%s is in All but no constant has that value", m)
		}
	}
}

// assignments finds the mode constants (other than OK) that file gives as
// values. Not counted: comparisons (== and !=), switch cases, and keys of
// composite literals (lookup tables keyed by mode). A conversion
// (string(failure.X), failure.Mode(...)) or parentheses around the
// constant count as the constant.
func assignments(fset *token.FileSet, file *ast.File, failurePath string) []assignment {
	local := ""
	for _, imp := range file.Imports {
		if strings.Trim(imp.Path.Value, `"`) != failurePath {
			continue
		}
		local = "failure"
		if imp.Name != nil {
			local = imp.Name.Name
		}
	}
	if local == "" || local == "_" || local == "." {
		return nil
	}
	var out []assignment
	var stack []ast.Node
	ast.Inspect(file, func(n ast.Node) bool {
		if n == nil {
			stack = stack[:len(stack)-1]
			return true
		}
		stack = append(stack, n)
		sel, ok := n.(*ast.SelectorExpr)
		if !ok {
			return true
		}
		x, ok := sel.X.(*ast.Ident)
		if !ok || x.Name != local {
			return true
		}
		m, ok := modeNames[sel.Sel.Name]
		if !ok || m == failure.OK {
			return true
		}
		if givenAsValue(stack, local) {
			out = append(out, assignment{mode: m, pos: fset.Position(sel.Pos())})
		}
		return true
	})
	return out
}

// givenAsValue looks at the constant's context: stack ends with it.
func givenAsValue(stack []ast.Node, local string) bool {
	child := stack[len(stack)-1]
	for i := len(stack) - 2; i >= 0; i-- {
		switch p := stack[i].(type) {
		case *ast.ParenExpr:
			child = p
			continue
		case *ast.CallExpr:
			if isConversion(p, local) {
				child = p
				continue
			}
			return true // passed to a function
		case *ast.BinaryExpr:
			return p.Op != token.EQL && p.Op != token.NEQ
		case *ast.CaseClause:
			return !slices.Contains(p.List, child.(ast.Expr))
		case *ast.KeyValueExpr:
			return p.Key != child
		}
		return true
	}
	return true
}

// isConversion reports string(x) and failure.Mode(x).
func isConversion(c *ast.CallExpr, local string) bool {
	if len(c.Args) != 1 {
		return false
	}
	switch fn := c.Fun.(type) {
	case *ast.Ident:
		return fn.Name == "string"
	case *ast.SelectorExpr:
		x, ok := fn.X.(*ast.Ident)
		return ok && x.Name == local && fn.Sel.Name == "Mode"
	}
	return false
}

func moduleRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test's directory")
		}
		dir = parent
	}
}

func modulePath(t *testing.T, root string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if p, ok := strings.CutPrefix(strings.TrimSpace(line), "module "); ok {
			return strings.TrimSpace(p)
		}
	}
	t.Fatal("go.mod names no module")
	return ""
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
