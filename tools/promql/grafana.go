package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
)

// The parts of a Grafana dashboard (the JSON that "Export" writes and
// "Import" reads) that this check reads. Everything else is Grafana's.
type dashboard struct {
	Title         string  `json:"title"`
	UID           string  `json:"uid"`
	SchemaVersion int     `json:"schemaVersion"`
	Panels        []panel `json:"panels"`
	Templating    struct {
		List []variable `json:"list"`
	} `json:"templating"`
}

type panel struct {
	ID          int      `json:"id"`
	Type        string   `json:"type"`
	Title       string   `json:"title"`
	Description string   `json:"description"`
	Datasource  *dsRef   `json:"datasource"`
	GridPos     *gridPos `json:"gridPos"`
	Targets     []target `json:"targets"`
	Panels      []panel  `json:"panels"` // a collapsed row's
}

type dsRef struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type gridPos struct {
	H int `json:"h"`
	W int `json:"w"`
	X int `json:"x"`
	Y int `json:"y"`
}

type target struct {
	RefID        string `json:"refId"`
	Expr         string `json:"expr"`
	LegendFormat string `json:"legendFormat"`
	Datasource   *dsRef `json:"datasource"`
}

type variable struct {
	Name       string          `json:"name"`
	Type       string          `json:"type"`
	Query      json.RawMessage `json:"query"`
	Datasource *dsRef          `json:"datasource"`
}

// query is a variable's query: a string, or {"query": "..."} as newer
// Grafana versions write it.
func (v variable) query() (string, error) {
	if len(v.Query) == 0 {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(v.Query, &s); err == nil {
		return s, nil
	}
	var o struct {
		Query string `json:"query"`
	}
	if err := json.Unmarshal(v.Query, &o); err != nil {
		return "", fmt.Errorf("query is neither a string nor {\"query\": ...}: %w", err)
	}
	return o.Query, nil
}

// Panel types a Prometheus dashboard of this kind uses; "row" and "text"
// have no queries.
var panelTypes = []string{"timeseries", "stat", "gauge", "bargauge", "table", "heatmap", "piechart", "state-timeline", "row", "text"}

// Grafana's global variables that may stand in an expression, and what the
// check puts in their place to parse it.
var builtinVars = map[string]string{
	"__rate_interval": "5m", "__interval": "1m", "__range": "6h",
	"__interval_ms": "60000", "__range_ms": "21600000", "__range_s": "21600",
}

// varRef is a template variable reference: $name, ${name}, ${name:format}
// or [[name]].
var varRef = regexp.MustCompile(`\$\{([a-zA-Z0-9_]+)(?::[a-zA-Z0-9_]+)?\}|\$([a-zA-Z0-9_]+)|\[\[([a-zA-Z0-9_]+)\]\]`)

var legendRef = regexp.MustCompile(`\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}`)

var labelValues = regexp.MustCompile(`^\s*label_values\(\s*(.*)\s*,\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)\s*$`)

// checkDashboard checks a Grafana dashboard's structure and every query in
// it: panel targets and template variables.
func (c *Checker) checkDashboard(data []byte, r *Report) {
	var d dashboard
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&d); err != nil {
		r.Problem("", "not a dashboard's JSON: %v", err)
		return
	}
	if dec.More() {
		r.Problem("", "trailing data after the dashboard")
	}
	if strings.TrimSpace(d.Title) == "" {
		r.Problem("", "no title")
	}
	if d.UID == "" || len(d.UID) > 40 {
		r.Problem("", "uid %q: Grafana needs 1 to 40 characters (links and provisioning use it)", d.UID)
	}
	if d.SchemaVersion <= 0 {
		r.Problem("", "no schemaVersion")
	}

	vars := map[string]variable{}
	dsVars := map[string]bool{}
	for i, v := range d.Templating.List {
		where := fmt.Sprintf("variable %q", v.Name)
		if v.Name == "" {
			r.Problem(fmt.Sprintf("templating.list[%d]", i), "variable without a name")
			continue
		}
		if _, dup := vars[v.Name]; dup {
			r.Problem(where, "defined twice")
		}
		vars[v.Name] = v
		q, err := v.query()
		if err != nil {
			r.Problem(where, "%v", err)
			continue
		}
		switch v.Type {
		case "datasource":
			if q != "prometheus" {
				r.Problem(where, "datasource variable of type %q, want prometheus", q)
			}
			dsVars[v.Name] = true
		case "query":
			// checked below, once every datasource variable is known
		case "custom", "constant", "interval", "textbox", "adhoc":
		default:
			r.Problem(where, "unknown variable type %q", v.Type)
		}
	}
	if len(dsVars) == 0 {
		r.Problem("templating", "no datasource variable of type prometheus: every panel should follow the one the user picks")
	}
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		where := fmt.Sprintf("variable %q", v.Name)
		c.checkDatasource(where, v.Datasource, dsVars, r)
		q, _ := v.query()
		c.checkVariableQuery(where, q, vars, r)
	}

	if len(d.Panels) == 0 {
		r.Problem("", "no panels")
	}
	ids := map[int]string{}
	var placed []panel
	var walk func(ps []panel, nested bool)
	walk = func(ps []panel, nested bool) {
		for _, p := range ps {
			where := fmt.Sprintf("panel %d %q", p.ID, p.Title)
			if p.ID <= 0 {
				r.Problem(where, "no id")
			} else if other, dup := ids[p.ID]; dup {
				r.Problem(where, "id %d is also panel %q's", p.ID, other)
			}
			ids[p.ID] = p.Title
			if strings.TrimSpace(p.Title) == "" {
				r.Problem(where, "no title")
			}
			if !slices.Contains(panelTypes, p.Type) {
				r.Problem(where, "panel type %q is none of %s", p.Type, strings.Join(panelTypes, ", "))
			}
			if p.GridPos == nil {
				r.Problem(where, "no gridPos")
			} else if g := *p.GridPos; g.W < 1 || g.X < 0 || g.X+g.W > 24 || g.H < 1 || g.Y < 0 {
				r.Problem(where, "gridPos %+v is off Grafana's 24-column grid", g)
			} else if !nested {
				for _, q := range placed {
					if overlaps(*q.GridPos, g) {
						r.Problem(where, "overlaps panel %d %q", q.ID, q.Title)
					}
				}
				placed = append(placed, p)
			}
			if p.Type == "row" {
				walk(p.Panels, true)
				continue
			}
			if p.Type == "text" {
				continue
			}
			if strings.TrimSpace(p.Description) == "" {
				r.Problem(where, "no description: say what the panel answers")
			}
			c.checkDatasource(where, p.Datasource, dsVars, r)
			if len(p.Targets) == 0 {
				r.Problem(where, "no targets")
			}
			refs := map[string]bool{}
			for _, t := range p.Targets {
				tw := where + " target " + t.RefID
				if t.RefID == "" || refs[t.RefID] {
					r.Problem(tw, "refId empty or used twice")
				}
				refs[t.RefID] = true
				if t.Datasource != nil && (p.Datasource == nil || *t.Datasource != *p.Datasource) {
					r.Problem(tw, "datasource %+v differs from the panel's", *t.Datasource)
				}
				c.checkTarget(tw, t, vars, r)
			}
		}
	}
	walk(d.Panels, false)
}

func overlaps(a, b gridPos) bool {
	return a.X < b.X+b.W && b.X < a.X+a.W && a.Y < b.Y+b.H && b.Y < a.Y+a.H
}

func (c *Checker) checkDatasource(where string, ds *dsRef, dsVars map[string]bool, r *Report) {
	if ds == nil {
		r.Problem(where, "no datasource: it would use Grafana's default instead of the dashboard's")
		return
	}
	if ds.Type != "prometheus" {
		r.Problem(where, "datasource type %q, want prometheus", ds.Type)
	}
	m := varRef.FindStringSubmatch(ds.UID)
	if m == nil || m[0] != ds.UID || !dsVars[m[1]+m[2]+m[3]] {
		r.Problem(where, "datasource uid %q: want a datasource variable (${datasource}), not a fixed uid that exists only in one Grafana", ds.UID)
	}
}

// substitute replaces Grafana's variables in q with values that parse, and
// reports references to variables the dashboard does not define.
func substitute(where, q string, vars map[string]variable, r *Report) string {
	return varRef.ReplaceAllStringFunc(q, func(ref string) string {
		m := varRef.FindStringSubmatch(ref)
		name := m[1] + m[2] + m[3]
		if v, ok := builtinVars[name]; ok {
			return v
		}
		if _, ok := vars[name]; !ok {
			r.Problem(where, "uses $%s, which is no variable of this dashboard", name)
		}
		return "x"
	})
}

func (c *Checker) checkTarget(where string, t target, vars map[string]variable, r *Report) {
	if strings.TrimSpace(t.Expr) == "" {
		r.Problem(where, "no expr")
		return
	}
	r.Expression()
	e, err := c.Parse(substitute(where, t.Expr, vars, r))
	if err != nil {
		r.Problem(where, "expr does not parse: %v", err)
		return
	}
	for _, p := range c.CheckExpr(e) {
		r.Problem(where, "expr: %s", p)
	}
	keep, known := c.ResultLabels(e)
	for _, m := range legendRef.FindAllStringSubmatch(t.LegendFormat, -1) {
		if known && !keep[m[1]] {
			r.Problem(where, "legend uses {{%s}}, which the expression does not keep (it keeps %s)", m[1], strings.Join(slices.Sorted(maps.Keys(keep)), ", "))
		}
	}
}

// checkVariableQuery checks a Prometheus variable query: label_values(
// selector, label) or query_result(expr), as Grafana's Prometheus data
// source defines them.
func (c *Checker) checkVariableQuery(where, q string, vars map[string]variable, r *Report) {
	var expr string
	switch {
	case labelValues.MatchString(q):
		m := labelValues.FindStringSubmatch(q)
		// The same names as: which values of label do these series have?
		expr = "group by (" + m[2] + ") (" + m[1] + ")"
	case strings.HasPrefix(strings.TrimSpace(q), "query_result(") && strings.HasSuffix(strings.TrimSpace(q), ")"):
		s := strings.TrimSpace(q)
		expr = s[len("query_result(") : len(s)-1]
	default:
		r.Problem(where, "query %q: want label_values(<metric selector>, <label>) or query_result(<expr>)", q)
		return
	}
	r.Expression()
	e, err := c.Parse(substitute(where, expr, vars, r))
	if err != nil {
		r.Problem(where, "query %q does not parse: %v", q, err)
		return
	}
	for _, p := range c.CheckExpr(e) {
		r.Problem(where, "query %q: %s", q, p)
	}
}
