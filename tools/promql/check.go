package main

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
)

// Checker parses PromQL with Prometheus's own parser and checks that every
// metric and label name an expression refers to is one the exposition
// offers.
type Checker struct {
	exp    *Exposed
	parser parser.Parser
}

// NewChecker checks against exp.
func NewChecker(exp *Exposed) *Checker {
	return &Checker{exp: exp, parser: parser.NewParser(parser.Options{})}
}

// Parse parses expr as Prometheus would.
func (c *Checker) Parse(expr string) (parser.Expr, error) {
	return c.parser.ParseExpr(expr)
}

// Check parses expr and returns every problem with it: a parse error, or a
// metric or label name that the exposition does not have.
func (c *Checker) Check(expr string) []string {
	e, err := c.parser.ParseExpr(expr)
	if err != nil {
		return []string{"does not parse: " + err.Error()}
	}
	return c.CheckExpr(e)
}

// CheckExpr checks a parsed expression's names.
func (c *Checker) CheckExpr(e parser.Expr) []string {
	var probs []string
	add := func(format string, args ...any) { probs = append(probs, fmt.Sprintf(format, args...)) }
	parser.Inspect(e, func(node parser.Node, _ []parser.Node) error {
		switch n := node.(type) {
		case *parser.VectorSelector:
			name := selectorName(n)
			if name == "" {
				add("selector %s names no metric: select a metric ccproxy exports by name", n)
				return nil
			}
			if !c.exp.Has(name) {
				add("unknown metric %q%s", name, c.suggest(name))
				return nil
			}
			for _, m := range n.LabelMatchers {
				if m.Name != model.MetricNameLabel && !c.exp.HasLabel(name, m.Name) {
					add("metric %s has no label %q (it has %s)", name, m.Name, strings.Join(c.exp.Labels(name), ", "))
				}
			}
		case *parser.AggregateExpr:
			avail, whole := c.available(n.Expr)
			if !whole {
				return nil // an unknown metric below is reported already
			}
			word := "by"
			if n.Without {
				word = "without"
			}
			for _, l := range n.Grouping {
				if !avail[l] {
					add("%s (%s): no series under %s has label %q", word, strings.Join(n.Grouping, ", "), n.Op, l)
				}
			}
		case *parser.BinaryExpr:
			vm := n.VectorMatching
			if vm == nil || n.LHS.Type() != parser.ValueTypeVector || n.RHS.Type() != parser.ValueTypeVector {
				return nil
			}
			lhs, lwhole := c.available(n.LHS)
			rhs, rwhole := c.available(n.RHS)
			if !lwhole || !rwhole {
				return nil
			}
			for _, l := range vm.MatchingLabels {
				switch {
				case vm.On && (!lhs[l] || !rhs[l]):
					add("on (%s): label %q is not on both sides of %s", strings.Join(vm.MatchingLabels, ", "), l, n.Op)
				case !vm.On && !lhs[l] && !rhs[l]:
					add("ignoring (%s): label %q is on neither side of %s", strings.Join(vm.MatchingLabels, ", "), l, n.Op)
				}
			}
			one := rhs // group_left takes the extra labels from the right
			if vm.Card == parser.CardOneToMany {
				one = lhs
			}
			for _, l := range vm.Include {
				if !one[l] {
					add("group_left/group_right (%s): label %q is not on the \"one\" side", strings.Join(vm.Include, ", "), l)
				}
			}
		case *parser.Call:
			switch n.Func.Name {
			case "label_replace":
				if src := stringArg(n, 3); src != "" && !c.availableOK(n.Args[0], src) {
					add("label_replace: source label %q is on no series of its argument", src)
				}
			case "label_join":
				for i := 3; i < len(n.Args); i++ {
					if src := stringArg(n, i); src != "" && !c.availableOK(n.Args[0], src) {
						add("label_join: source label %q is on no series of its argument", src)
					}
				}
			case "histogram_quantile", "histogram_fraction":
				arg := n.Args[len(n.Args)-1]
				parser.Inspect(arg, func(node parser.Node, _ []parser.Node) error {
					if vs, ok := node.(*parser.VectorSelector); ok {
						if name := selectorName(vs); name != "" && !strings.HasSuffix(name, "_bucket") {
							add("%s over %s: a classic histogram's quantile needs its _bucket series", n.Func.Name, name)
						}
					}
					return nil
				})
			}
		}
		return nil
	})
	return probs
}

// available is every label name a series under node may carry: the labels
// of every metric it selects, the target labels, and labels that
// label_replace or label_join make. It over-approximates (an inner
// aggregation may have dropped some), which is enough to catch a name that
// exists nowhere. whole is false when a selector below names no known
// metric, whose labels cannot be known.
func (c *Checker) available(node parser.Node) (set map[string]bool, whole bool) {
	set, whole = map[string]bool{}, true
	for l := range c.exp.target {
		set[l] = true
	}
	parser.Inspect(node, func(n parser.Node, _ []parser.Node) error {
		switch n := n.(type) {
		case *parser.VectorSelector:
			name := selectorName(n)
			if name == "" || !c.exp.Has(name) {
				whole = false
			}
			for _, l := range c.exp.Labels(name) {
				set[l] = true
			}
		case *parser.Call:
			if n.Func.Name == "label_replace" || n.Func.Name == "label_join" {
				if dst := stringArg(n, 1); dst != "" {
					set[dst] = true
				}
			}
		}
		return nil
	})
	return set, whole
}

// availableOK reports whether label may be on a series under node, or
// cannot be known because a metric below is unknown (reported already).
func (c *Checker) availableOK(node parser.Node, label string) bool {
	set, whole := c.available(node)
	return set[label] || !whole
}

// ResultLabels is the label names every series of e's result carries, when
// they can be known from its shape (ok false otherwise): a by() aggregation
// keeps exactly its grouping, a selector its metric's labels, and so on.
// Templates ({{ $labels.x }}, Grafana's {{x}}) may refer only to these.
func (c *Checker) ResultLabels(e parser.Expr) (set map[string]bool, ok bool) {
	switch n := e.(type) {
	case *parser.ParenExpr:
		return c.ResultLabels(n.Expr)
	case *parser.StepInvariantExpr:
		return c.ResultLabels(n.Expr)
	case *parser.NumberLiteral, *parser.StringLiteral:
		return map[string]bool{}, true
	case *parser.VectorSelector:
		name := selectorName(n)
		if name == "" {
			return nil, false
		}
		set := map[string]bool{}
		for _, l := range c.exp.Labels(name) {
			set[l] = true
		}
		return set, true
	case *parser.MatrixSelector:
		return c.ResultLabels(n.VectorSelector)
	case *parser.SubqueryExpr:
		return c.ResultLabels(n.Expr)
	case *parser.UnaryExpr:
		return c.ResultLabels(n.Expr)
	case *parser.AggregateExpr:
		if n.Without {
			return nil, false
		}
		switch n.Op {
		case parser.TOPK, parser.BOTTOMK, parser.LIMITK, parser.LIMIT_RATIO:
			return c.ResultLabels(n.Expr) // they keep whole series
		}
		set := map[string]bool{}
		for _, l := range n.Grouping {
			set[l] = true
		}
		return set, true
	case *parser.Call:
		switch n.Func.Name {
		case "vector", "time", "scalar", "pi":
			return map[string]bool{}, true
		case "histogram_quantile", "histogram_fraction":
			set, ok := c.ResultLabels(n.Args[len(n.Args)-1])
			if ok {
				set = maps.Clone(set)
				delete(set, "le")
			}
			return set, ok
		case "label_replace", "label_join":
			set, ok := c.ResultLabels(n.Args[0])
			if ok {
				set = maps.Clone(set)
				set[stringArg(n, 1)] = true
			}
			return set, ok
		}
		// Functions of one vector keep its labels (rate, increase, round,
		// sort_desc, clamp_min, ...).
		for _, a := range n.Args {
			if a.Type() == parser.ValueTypeVector || a.Type() == parser.ValueTypeMatrix {
				return c.ResultLabels(a)
			}
		}
		return nil, false
	case *parser.BinaryExpr:
		lt, rt := n.LHS.Type(), n.RHS.Type()
		switch {
		case lt == parser.ValueTypeScalar && rt == parser.ValueTypeScalar:
			return map[string]bool{}, true
		case lt == parser.ValueTypeScalar:
			return c.ResultLabels(n.RHS)
		case rt == parser.ValueTypeScalar:
			return c.ResultLabels(n.LHS)
		}
		l, lok := c.ResultLabels(n.LHS)
		r, rok := c.ResultLabels(n.RHS)
		switch n.Op {
		case parser.LAND, parser.LUNLESS:
			return l, lok
		case parser.LOR:
			if !lok || !rok {
				return nil, false
			}
			set := map[string]bool{}
			for k := range l {
				if r[k] {
					set[k] = true // on every series only if on both sides
				}
			}
			return set, true
		}
		vm := n.VectorMatching
		if vm == nil || vm.Card == parser.CardOneToOne {
			if vm != nil && vm.On && !n.ReturnBool {
				// Arithmetic with on() keeps the matching labels only;
				// comparisons keep the left side's series.
				if !n.Op.IsComparisonOperator() {
					set := map[string]bool{}
					for _, k := range vm.MatchingLabels {
						set[k] = true
					}
					return set, true
				}
			}
			return l, lok
		}
		many, one, ok := l, r, lok && rok
		if vm.Card == parser.CardOneToMany {
			many, one = r, l
		}
		if !ok {
			return nil, false
		}
		set := maps.Clone(many)
		for _, k := range vm.Include {
			if one[k] {
				set[k] = true
			}
		}
		return set, true
	}
	return nil, false
}

// suggest names exposed series that share name's first two words, to make
// a rename easy to follow.
func (c *Checker) suggest(name string) string {
	parts := strings.SplitN(name, "_", 3)
	if len(parts) < 2 {
		return ""
	}
	prefix := parts[0] + "_" + parts[1]
	var near []string
	for s := range c.exp.labels {
		if strings.HasPrefix(s, prefix) {
			near = append(near, s)
		}
	}
	if len(near) == 0 {
		return " (the metrics page has nothing like it)"
	}
	slices.Sort(near)
	return " (the metrics page has " + strings.Join(near, ", ") + ")"
}

func selectorName(vs *parser.VectorSelector) string {
	if vs.Name != "" {
		return vs.Name
	}
	for _, m := range vs.LabelMatchers {
		if m.Name == model.MetricNameLabel && m.Type == labels.MatchEqual {
			return m.Value
		}
	}
	return ""
}

func stringArg(c *parser.Call, i int) string {
	if i >= len(c.Args) {
		return ""
	}
	if s, ok := c.Args[i].(*parser.StringLiteral); ok {
		return s.Val
	}
	return ""
}
