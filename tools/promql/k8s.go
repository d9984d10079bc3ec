package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"regexp"
	"slices"
	"strings"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	yamlv3 "go.yaml.in/yaml/v3"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// The API version of the Prometheus Operator's objects.
const monitoringAPI = "monitoring.coreos.com/v1"

// splitDocuments splits a multi-document YAML stream, dropping documents
// that hold only comments or whitespace.
func splitDocuments(data []byte) ([][]byte, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var docs [][]byte
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("splitting YAML: %w", err)
		}
		var probe any
		if err := yaml.Unmarshal(doc, &probe); err != nil {
			return nil, fmt.Errorf("document %d: %w", len(docs)+1, err)
		}
		if probe != nil {
			docs = append(docs, doc)
		}
	}
}

// decodeStrict decodes one document into the Prometheus Operator's Go type
// for its kind, rejecting duplicate keys, unknown fields and other kinds or
// API versions: a misspelt field must fail here, not be dropped silently by
// the API server (the offline part of `kubectl apply --validate=strict`).
func decodeStrict(doc []byte) (any, error) {
	j, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return nil, fmt.Errorf("YAML: %w", err)
	}
	var tm metav1.TypeMeta
	if err := json.Unmarshal(j, &tm); err != nil {
		return nil, fmt.Errorf("reading kind: %w", err)
	}
	var obj any
	switch tm.Kind {
	case monitoringv1.PrometheusRuleKind:
		obj = &monitoringv1.PrometheusRule{}
	case monitoringv1.PodMonitorsKind:
		obj = &monitoringv1.PodMonitor{}
	case monitoringv1.ServiceMonitorsKind:
		obj = &monitoringv1.ServiceMonitor{}
	default:
		return nil, fmt.Errorf("unexpected kind %q (want PrometheusRule, PodMonitor or ServiceMonitor)", tm.Kind)
	}
	if tm.APIVersion != monitoringAPI {
		return nil, fmt.Errorf("%s: apiVersion %q, want %q", tm.Kind, tm.APIVersion, monitoringAPI)
	}
	dec := json.NewDecoder(bytes.NewReader(j))
	dec.DisallowUnknownFields()
	if err := dec.Decode(obj); err != nil {
		return nil, fmt.Errorf("%s: %w", tm.Kind, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%s: trailing data", tm.Kind)
	}
	return obj, nil
}

// checkYAML checks every object in a YAML file of Prometheus Operator
// objects.
func (c *Checker) checkYAML(data []byte, r *Report) {
	docs, err := splitDocuments(data)
	if err != nil {
		r.Problem("", "%v", err)
		return
	}
	if len(docs) == 0 {
		r.Problem("", "no objects")
	}
	for i, doc := range docs {
		obj, err := decodeStrict(doc)
		if err != nil {
			r.Problem(fmt.Sprintf("document %d", i+1), "%v", err)
			continue
		}
		switch o := obj.(type) {
		case *monitoringv1.PrometheusRule:
			c.checkRule(o, r)
		case *monitoringv1.PodMonitor:
			checkPodMonitor(o, r)
		case *monitoringv1.ServiceMonitor:
			checkServiceMonitor(o, r)
		}
	}
}

func checkMeta(kind string, m metav1.ObjectMeta, r *Report) string {
	where := kind + " " + m.Name
	if m.Name == "" {
		r.Problem(kind, "metadata.name is empty")
	}
	if m.Namespace != "" {
		r.Problem(where, "metadata.namespace is set (%q): apply it with -n into the relay's namespace instead", m.Namespace)
	}
	return where
}

// checkRule validates the rule groups as Prometheus loads them (rulefmt:
// the expression parses, alert and record names, for, labels, annotation
// templates) and every expression's names against the exposition, and
// that each alert's templates use only labels its expression keeps.
func (c *Checker) checkRule(pr *monitoringv1.PrometheusRule, r *Report) {
	where := checkMeta("PrometheusRule", pr.ObjectMeta, r)
	if len(pr.Spec.Groups) == 0 {
		r.Problem(where, "no rule groups")
	}
	// Prometheus's own rule file format, from the operator's types, so that
	// rulefmt checks what the operator will hand to Prometheus.
	file := rulefmt.RuleGroups{}
	for _, g := range pr.Spec.Groups {
		fg := rulefmt.RuleGroup{Name: g.Name, Labels: g.Labels}
		if g.Interval != nil {
			d, err := model.ParseDuration(string(*g.Interval))
			if err != nil {
				r.Problem(where+" group "+g.Name, "interval: %v", err)
			}
			fg.Interval = d
		}
		for _, rule := range g.Rules {
			fr := rulefmt.Rule{Record: rule.Record, Alert: rule.Alert, Expr: rule.Expr.String(), Labels: rule.Labels, Annotations: rule.Annotations}
			if rule.For != nil {
				d, err := model.ParseDuration(string(*rule.For))
				if err != nil {
					r.Problem(where+" "+ruleName(rule), "for: %v", err)
				}
				fr.For = d
			}
			fg.Rules = append(fg.Rules, fr)
		}
		file.Groups = append(file.Groups, fg)
	}
	content, err := yamlv3.Marshal(file)
	if err != nil {
		r.Problem(where, "re-encoding the rule groups: %v", err)
		return
	}
	logger := slog.New(slog.DiscardHandler)
	if _, errs := rulefmt.Parse(content, false, model.UTF8Validation, c.parser, logger); len(errs) > 0 {
		for _, e := range errs {
			r.Problem(where, "Prometheus rejects the rules: %v", e)
		}
	}
	for _, g := range pr.Spec.Groups {
		for _, rule := range g.Rules {
			rw := where + " group " + g.Name + " " + ruleName(rule)
			expr := rule.Expr.String()
			r.Expression()
			e, err := c.Parse(expr)
			if err != nil {
				r.Problem(rw, "expr does not parse: %v", err)
				continue
			}
			for _, p := range c.CheckExpr(e) {
				r.Problem(rw, "expr: %s", p)
			}
			if rule.Alert == "" {
				continue
			}
			if rule.Labels["severity"] == "" {
				r.Problem(rw, "no severity label")
			}
			for _, a := range []string{"summary", "description"} {
				if strings.TrimSpace(rule.Annotations[a]) == "" {
					r.Problem(rw, "no %s annotation", a)
				}
			}
			keep, known := c.ResultLabels(e)
			for _, a := range slices.Sorted(maps.Keys(rule.Annotations)) {
				for _, m := range templateLabel.FindAllStringSubmatch(rule.Annotations[a], -1) {
					if known && !keep[m[1]] {
						r.Problem(rw, "annotation %s uses $labels.%s, which the expression does not keep (it keeps %s)", a, m[1], strings.Join(slices.Sorted(maps.Keys(keep)), ", "))
					}
				}
			}
		}
	}
}

var templateLabel = regexp.MustCompile(`\$labels\.([a-zA-Z_][a-zA-Z0-9_]*)`)

func ruleName(r monitoringv1.Rule) string {
	if r.Alert != "" {
		return "alert " + r.Alert
	}
	return "record " + r.Record
}

func checkPodMonitor(pm *monitoringv1.PodMonitor, r *Report) {
	where := checkMeta("PodMonitor", pm.ObjectMeta, r)
	if len(pm.Spec.Selector.MatchLabels) == 0 && len(pm.Spec.Selector.MatchExpressions) == 0 {
		r.Problem(where, "empty selector: it would scrape every pod in the namespace")
	}
	if len(pm.Spec.PodMetricsEndpoints) == 0 {
		r.Problem(where, "no podMetricsEndpoints")
	}
	for i, ep := range pm.Spec.PodMetricsEndpoints {
		ew := fmt.Sprintf("%s podMetricsEndpoints[%d]", where, i)
		if (ep.Port == nil || *ep.Port == "") && ep.PortNumber == nil {
			r.Problem(ew, "no port: name the pods' admin container port")
		}
		checkPath(ew, ep.Path, r)
	}
}

func checkServiceMonitor(sm *monitoringv1.ServiceMonitor, r *Report) {
	where := checkMeta("ServiceMonitor", sm.ObjectMeta, r)
	if len(sm.Spec.Selector.MatchLabels) == 0 && len(sm.Spec.Selector.MatchExpressions) == 0 {
		r.Problem(where, "empty selector: it would scrape every Service in the namespace")
	}
	if len(sm.Spec.Endpoints) == 0 {
		r.Problem(where, "no endpoints")
	}
	for i, ep := range sm.Spec.Endpoints {
		ew := fmt.Sprintf("%s endpoints[%d]", where, i)
		if ep.Port == "" && ep.TargetPort == nil {
			r.Problem(ew, "no port: name the Service's admin port")
		}
		checkPath(ew, ep.Path, r)
	}
}

func checkPath(where, path string, r *Report) {
	if path != "" && path != "/metrics" {
		r.Problem(where, "path %q: ccproxy serves metrics on /metrics", path)
	}
}
