// Command promqlcheck checks ccproxy's monitoring files (deploy/monitoring)
// against a live /metrics page of ccproxy: every PromQL expression in a
// PrometheusRule or a Grafana dashboard is parsed with Prometheus's own
// parser, the rules are validated as Prometheus loads them (rulefmt), the
// Prometheus Operator objects are decoded strictly into the operator's Go
// types, and every metric and label name an expression uses must be on the
// page (or be a label Prometheus adds when it scrapes: -target-labels). A
// renamed metric fails the build, not the dashboard.
//
//	promqlcheck -metrics scrape.txt deploy/monitoring/*.yaml deploy/monitoring/*.json
//
// It exits 0 when everything checks, 1 listing every problem, 2 on a usage
// error. It lives in a module of its own (tools/promql) so that
// Prometheus's large dependency tree stays out of ccproxy's go.mod;
// deploy/monitoring_test.go builds and runs it against a real relay.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// The labels the Prometheus Operator's PodMonitor gives every series it
// scrapes (and job and instance, which every scrape adds).
const defaultTargetLabels = "job,instance,namespace,pod,container,endpoint"

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("promqlcheck", flag.ContinueOnError)
	fs.SetOutput(stderr)
	metrics := fs.String("metrics", "", "a /metrics page (Prometheus text format) of the program the files monitor")
	targets := fs.String("target-labels", defaultTargetLabels, "comma-separated labels Prometheus adds to every scraped series")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: promqlcheck -metrics FILE [-target-labels L,...] FILE.yaml|FILE.json ...")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *metrics == "" || fs.NArg() == 0 {
		fs.Usage()
		return 2
	}
	page, err := os.Open(*metrics)
	if err != nil {
		fmt.Fprintln(stderr, "promqlcheck:", err)
		return 2
	}
	defer page.Close()
	var tl []string
	for _, l := range strings.Split(*targets, ",") {
		if l = strings.TrimSpace(l); l != "" {
			tl = append(tl, l)
		}
	}
	exp, err := ParseExposition(page, tl)
	if err != nil {
		fmt.Fprintln(stderr, "promqlcheck:", err)
		return 2
	}
	if exp.Len() == 0 {
		fmt.Fprintln(stderr, "promqlcheck:", *metrics, "holds no metrics")
		return 2
	}
	c := NewChecker(exp)
	r := &Report{}
	for _, path := range fs.Args() {
		if err := c.CheckFile(path, r); err != nil {
			fmt.Fprintln(stderr, "promqlcheck:", err)
			return 2
		}
	}
	for _, p := range r.Problems {
		fmt.Fprintln(stdout, p)
	}
	if len(r.Problems) > 0 {
		fmt.Fprintf(stdout, "promqlcheck: %d problems in %d files (%d expressions, %d series names on the page)\n",
			len(r.Problems), fs.NArg(), r.Expressions, exp.Len())
		return 1
	}
	fmt.Fprintf(stdout, "promqlcheck: ok: %d expressions in %d files use only names from %s (%d series names)\n",
		r.Expressions, fs.NArg(), *metrics, exp.Len())
	return 0
}

// CheckFile checks one file by its extension: .yaml/.yml holds Prometheus
// Operator objects, .json a Grafana dashboard.
func (c *Checker) CheckFile(path string, r *Report) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	r.file = path
	switch filepath.Ext(path) {
	case ".yaml", ".yml":
		c.checkYAML(data, r)
	case ".json":
		c.checkDashboard(data, r)
	default:
		return errors.New(path + ": want a .yaml (PrometheusRule, PodMonitor, ServiceMonitor) or .json (Grafana dashboard) file")
	}
	return nil
}

// Report collects problems, each prefixed with its file and place.
type Report struct {
	Problems    []string
	Expressions int
	file        string
}

// Problem records one problem at where (empty: the file as a whole).
func (r *Report) Problem(where, format string, args ...any) {
	prefix := r.file + ": "
	if where != "" {
		prefix += where + ": "
	}
	r.Problems = append(r.Problems, prefix+fmt.Sprintf(format, args...))
}

// Expression counts one checked expression.
func (r *Report) Expression() { r.Expressions++ }
