package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A page like ccproxy's, small.
const page = `# HELP ccproxy_connections_total Client connections ended.
# TYPE ccproxy_connections_total counter
ccproxy_connections_total{failure_mode="ok",upstream="coordinator:1313"} 0
# HELP ccproxy_issuer_latency_seconds Issuer latency.
# TYPE ccproxy_issuer_latency_seconds histogram
ccproxy_issuer_latency_seconds_bucket{le="1"} 0
ccproxy_issuer_latency_seconds_bucket{le="+Inf"} 0
ccproxy_issuer_latency_seconds_sum 0
ccproxy_issuer_latency_seconds_count 0
# HELP go_gc_duration_seconds GC pauses.
# TYPE go_gc_duration_seconds summary
go_gc_duration_seconds{quantile="0.5"} 0
go_gc_duration_seconds_sum 0
go_gc_duration_seconds_count 0
# HELP process_resident_memory_bytes RSS.
# TYPE process_resident_memory_bytes gauge
process_resident_memory_bytes 1e+07
`

func checker(t *testing.T) *Checker {
	t.Helper()
	exp, err := ParseExposition(strings.NewReader(page), strings.Split(defaultTargetLabels, ","))
	if err != nil {
		t.Fatal(err)
	}
	return NewChecker(exp)
}

func TestCheckExpressions(t *testing.T) {
	c := checker(t)
	tests := []struct {
		expr string
		want []string // substrings, one per problem; none for a good expression
	}{
		{`sum by (failure_mode) (rate(ccproxy_connections_total{upstream=~"coord.*"}[5m]))`, nil},
		{`histogram_quantile(0.99, sum by (namespace, pod, le) (rate(ccproxy_issuer_latency_seconds_bucket[10m]))) > 20`, nil},
		{`ccproxy_issuer_latency_seconds_count + ccproxy_issuer_latency_seconds_sum`, nil},
		{`go_gc_duration_seconds{quantile="0.5"}`, nil},
		{`process_resident_memory_bytes > 1 and on (namespace, pod) ccproxy_connections_total`, nil},
		{`label_replace(ccproxy_connections_total, "port", "$1", "upstream", ".*:(.*)")`, nil},
		{`sum by (port) (label_replace(ccproxy_connections_total, "port", "$1", "upstream", ".*:(.*)"))`, nil},
		{`{__name__="ccproxy_connections_total"}`, nil},
		{`vector(1)`, nil},

		{`sum(rate(ccproxy_connections_total[5m]`, []string{"does not parse"}},
		{`rate(ccproxy_connection_total[5m])`, []string{`unknown metric "ccproxy_connection_total" (the metrics page has ccproxy_connections_total)`}},
		{`ccproxy_connections_total{mode="ok"}`, []string{`metric ccproxy_connections_total has no label "mode"`}},
		{`sum by (listen) (ccproxy_connections_total)`, []string{`by (listen): no series under sum has label "listen"`}},
		{`ccproxy_connections_total / on (listen) process_resident_memory_bytes`, []string{`on (listen): label "listen" is not on both sides`}},
		{`ccproxy_connections_total * on (pod) group_left (failure_mode) process_resident_memory_bytes`, []string{`label "failure_mode" is not on the "one" side`}},
		{`label_replace(process_resident_memory_bytes, "a", "$1", "upstream", "(.*)")`, []string{`source label "upstream"`}},
		{`{job="ccproxy"}`, []string{"names no metric"}},
		{`histogram_quantile(0.5, ccproxy_issuer_latency_seconds_count)`, []string{"needs its _bucket series"}},
		{`ccproxy_issuer_latency_seconds`, []string{`unknown metric "ccproxy_issuer_latency_seconds"`}},
		// An unknown metric is one problem, not one per label below it.
		{`sum by (failure_mode) (rate(nope_total[5m]))`, []string{`unknown metric "nope_total" (the metrics page has nothing like it)`}},
	}
	for _, tt := range tests {
		t.Run(tt.expr, func(t *testing.T) {
			got := c.Check(tt.expr)
			if len(got) != len(tt.want) {
				t.Fatalf("problems %q, want %d matching %q", got, len(tt.want), tt.want)
			}
			for i, w := range tt.want {
				if !strings.Contains(got[i], w) {
					t.Errorf("problem %q, want it to contain %q", got[i], w)
				}
			}
		})
	}
}

func TestResultLabels(t *testing.T) {
	c := checker(t)
	for expr, want := range map[string]string{
		`sum by (pod, upstream) (ccproxy_connections_total)`:                                          "pod,upstream",
		`histogram_quantile(0.9, sum by (pod, le) (rate(ccproxy_issuer_latency_seconds_bucket[5m])))`: "pod",
		`sum by (pod) (ccproxy_connections_total) > 0`:                                                "pod",
		`round(sum by (failure_mode) (increase(ccproxy_connections_total[1h]))) > 0`:                  "failure_mode",
		`max by (pod) (process_resident_memory_bytes) > 1 and on (pod) ccproxy_connections_total`:     "pod",
		`vector(1)`: "",
	} {
		e, err := c.Parse(expr)
		if err != nil {
			t.Fatal(err)
		}
		set, ok := c.ResultLabels(e)
		if !ok {
			t.Errorf("%s: result labels unknown", expr)
			continue
		}
		var got []string
		for _, l := range strings.Split(want, ",") {
			if l != "" && !set[l] {
				t.Errorf("%s: result lacks %q (%v)", expr, l, set)
			}
			if l != "" {
				got = append(got, l)
			}
		}
		if len(set) != len(got) {
			t.Errorf("%s: result labels %v, want %s", expr, set, want)
		}
	}
}

// run on files written to a temporary directory: the exit code and output.
func runOn(t *testing.T, files map[string]string) (int, string) {
	t.Helper()
	dir := t.TempDir()
	args := []string{"-metrics", filepath.Join(dir, "metrics.txt")}
	if err := os.WriteFile(args[1], []byte(page), 0o644); err != nil {
		t.Fatal(err)
	}
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		args = append(args, p)
	}
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return code, out.String() + errb.String()
}

const goodRule = `apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: r
spec:
  groups:
    - name: g
      rules:
        - alert: Failing
          expr: sum by (pod, failure_mode) (increase(ccproxy_connections_total{failure_mode!="ok"}[5m])) > 0
          for: 10m
          labels:
            severity: warning
          annotations:
            summary: '{{ $labels.pod }}: {{ $labels.failure_mode }}'
            description: '{{ $value | humanize }} connections'
`

func TestRunRules(t *testing.T) {
	if code, out := runOn(t, map[string]string{"rules.yaml": goodRule}); code != 0 {
		t.Fatalf("good rule: exit %d\n%s", code, out)
	}
	for name, tt := range map[string]struct{ from, to, want string }{
		"unknown field":          {"for: 10m", "for: 10m\n          fore: 1m", `unknown field "fore"`},
		"bad duration":           {"for: 10m", "for: ten minutes", "for"},
		"bad template":           {"humanize }}", "nosuchfunc }}", `function "nosuchfunc" not defined`},
		"label not kept":         {"$labels.pod }}:", "$labels.upstream }}:", "uses $labels.upstream, which the expression does not keep"},
		"unknown metric":         {"ccproxy_connections_total{", "ccproxy_connection_total{", `unknown metric "ccproxy_connection_total"`},
		"no severity":            {"severity: warning", "team: relay", "no severity label"},
		"wrong kind":             {"kind: PrometheusRule", "kind: PrometheusRules", `unexpected kind "PrometheusRules"`},
		"wrong api":              {"monitoring.coreos.com/v1", "monitoring.coreos.com/v1beta1", "apiVersion"},
		"namespace pinned":       {"name: r\n", "name: r\n  namespace: default\n", "metadata.namespace is set"},
		"expr does not parse":    {"> 0\n", "> \n", "parse"},
		"duplicate key":          {"for: 10m", "for: 10m\n          for: 5m", "already set"},
		"record and alert names": {"alert: Failing", "alert: Failing\n          record: x", "only one of"},
	} {
		t.Run(name, func(t *testing.T) {
			bad := strings.Replace(goodRule, tt.from, tt.to, 1)
			if bad == goodRule {
				t.Fatalf("%q not in the rule", tt.from)
			}
			code, out := runOn(t, map[string]string{"rules.yaml": bad})
			if code != 1 || !strings.Contains(strings.ToLower(out), strings.ToLower(tt.want)) {
				t.Errorf("exit %d, want 1 with %q in\n%s", code, tt.want, out)
			}
		})
	}
}

const goodPodMonitor = `apiVersion: monitoring.coreos.com/v1
kind: PodMonitor
metadata:
  name: m
spec:
  selector:
    matchLabels:
      app.kubernetes.io/component: ccproxy
  podMetricsEndpoints:
    - port: admin
      path: /metrics
`

func TestRunPodMonitor(t *testing.T) {
	if code, out := runOn(t, map[string]string{"pm.yaml": goodPodMonitor}); code != 0 {
		t.Fatalf("good PodMonitor: exit %d\n%s", code, out)
	}
	for name, tt := range map[string]struct{ from, to, want string }{
		"unknown field":  {"path: /metrics", "paht: /metrics", `unknown field`},
		"no port":        {"- port: admin\n      path", "- path", "no port"},
		"wrong path":     {"path: /metrics", "path: /metric", `path "/metric"`},
		"empty selector": {"matchLabels:\n      app.kubernetes.io/component: ccproxy\n", "matchLabels: {}\n", "empty selector"},
	} {
		t.Run(name, func(t *testing.T) {
			bad := strings.Replace(goodPodMonitor, tt.from, tt.to, 1)
			if bad == goodPodMonitor {
				t.Fatalf("%q not in the PodMonitor", tt.from)
			}
			code, out := runOn(t, map[string]string{"pm.yaml": bad})
			if code != 1 || !strings.Contains(out, tt.want) {
				t.Errorf("exit %d, want 1 with %q in\n%s", code, tt.want, out)
			}
		})
	}
}

const goodDashboard = `{
  "title": "t", "uid": "u", "schemaVersion": 39,
  "templating": {"list": [
    {"name": "datasource", "type": "datasource", "query": "prometheus"},
    {"name": "pod", "type": "query", "datasource": {"type": "prometheus", "uid": "${datasource}"},
     "query": {"query": "label_values(ccproxy_connections_total, pod)"}}
  ]},
  "panels": [
    {"id": 1, "type": "timeseries", "title": "a", "description": "d",
     "datasource": {"type": "prometheus", "uid": "${datasource}"},
     "gridPos": {"h": 8, "w": 12, "x": 0, "y": 0},
     "targets": [{"refId": "A", "expr": "sum by (failure_mode) (rate(ccproxy_connections_total{pod=~\"$pod\"}[$__rate_interval]))", "legendFormat": "{{failure_mode}}"}]},
    {"id": 2, "type": "timeseries", "title": "b", "description": "d",
     "datasource": {"type": "prometheus", "uid": "${datasource}"},
     "gridPos": {"h": 8, "w": 12, "x": 12, "y": 0},
     "targets": [{"refId": "A", "expr": "process_resident_memory_bytes{pod=~\"$pod\"}", "legendFormat": "{{pod}}"}]}
  ]
}`

func TestRunDashboard(t *testing.T) {
	if code, out := runOn(t, map[string]string{"d.json": goodDashboard}); code != 0 {
		t.Fatalf("good dashboard: exit %d\n%s", code, out)
	}
	for name, tt := range map[string]struct{ from, to, want string }{
		"unknown metric":    {`process_resident_memory_bytes{`, `process_resident_memory{`, `unknown metric "process_resident_memory"`},
		"unknown label":     {`{{failure_mode}}`, `{{mode}}`, "legend uses {{mode}}"},
		"unknown variable":  {`pod=~\"$pod\"}[`, `pod=~\"$pods\"}[`, "uses $pods"},
		"fixed datasource":  {`"uid": "${datasource}"},` + "\n     \"gridPos\": {\"h\": 8, \"w\": 12, \"x\": 12", `"uid": "P1809F7CD0C75ACF3"},` + "\n     \"gridPos\": {\"h\": 8, \"w\": 12, \"x\": 12", "not a fixed uid"},
		"overlap":           {`"x": 12, "y": 0`, `"x": 6, "y": 0`, "overlaps panel 1"},
		"off the grid":      {`"x": 12, "y": 0`, `"x": 13, "y": 0`, "off Grafana's 24-column grid"},
		"duplicate id":      {`"id": 2`, `"id": 1`, "id 1 is also"},
		"no description":    {`"title": "b", "description": "d"`, `"title": "b"`, "no description"},
		"bad variable":      {`label_values(ccproxy_connections_total, pod)`, `label_values(ccproxy_connections_total, pods)`, `no series under group has label "pods"`},
		"bad var query":     {`label_values(ccproxy_connections_total, pod)`, `metrics(ccproxy_.*)`, "want label_values"},
		"does not parse":    {`[$__rate_interval]))`, `[$__rate_interval])`, "does not parse"},
		"not json":          {`"title": "t",`, `"title": "t"`, "not a dashboard's JSON"},
		"unknown panelType": {`"type": "timeseries", "title": "b"`, `"type": "graph", "title": "b"`, `panel type "graph"`},
	} {
		t.Run(name, func(t *testing.T) {
			bad := strings.Replace(goodDashboard, tt.from, tt.to, 1)
			if bad == goodDashboard {
				t.Fatalf("%q not in the dashboard", tt.from)
			}
			code, out := runOn(t, map[string]string{"d.json": bad})
			if code != 1 || !strings.Contains(out, tt.want) {
				t.Errorf("exit %d, want 1 with %q in\n%s", code, tt.want, out)
			}
		})
	}
}

func TestRunUsage(t *testing.T) {
	var out bytes.Buffer
	if code := run(nil, &out, &out); code != 2 {
		t.Errorf("no arguments: exit %d, want 2", code)
	}
	if code, out := runOn(t, map[string]string{"x.txt": "x"}); code != 2 || !strings.Contains(out, "want a .yaml") {
		t.Errorf("unknown file type: exit %d, want 2\n%s", code, out)
	}
}
