package deploy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"
)

// deploy/monitoring: a Grafana dashboard, a PrometheusRule and a PodMonitor
// for the relays deployed from this folder. The checker that parses their
// PromQL with Prometheus's own parser and decodes the operator's objects
// strictly is tools/promql, a module of its own (Prometheus's dependency
// tree stays out of ccproxy's go.mod); these tests run it against the
// /metrics page of a real ccproxy started with the port-forwarder's
// configuration.
const (
	monitoringDir  = "monitoring"
	dashboardFile  = "monitoring/ccproxy-dashboard.json"
	rulesFile      = "monitoring/ccproxy-rules.yaml"
	podMonitorFile = "monitoring/ccproxy-podmonitor.yaml"
	checkerModule  = "../tools/promql"
)

// monitoringFiles are every file in deploy/monitoring: all of them go
// through the checker, so a new one cannot skip it.
func monitoringFiles(t *testing.T) []string {
	t.Helper()
	entries, err := os.ReadDir(monitoringDir)
	if err != nil {
		t.Fatal(err)
	}
	var files []string
	for _, e := range entries {
		files = append(files, filepath.Join(monitoringDir, e.Name()))
	}
	for _, want := range []string{dashboardFile, rulesFile, podMonitorFile} {
		if !slices.Contains(files, want) {
			t.Errorf("%s missing", want)
		}
	}
	return files
}

var (
	relayBinOnce sync.Once
	relayBin     string
	relayBinErr  error
	checkerOnce  sync.Once
	checkerBin   string
	checkerErr   error
	buildDir     string
)

func tempBuildDir() (string, error) {
	if buildDir != "" {
		return buildDir, nil
	}
	d, err := os.MkdirTemp("", "ccproxy-monitoring-test")
	buildDir = d
	return d, err
}

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// goBuild builds pkg in dir into the temporary build directory.
func goBuild(dir, pkg, out string, timeout time.Duration) (string, error) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		return "", err
	}
	bd, err := tempBuildDir()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(bd, out)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, gobin, "build", "-o", bin, pkg)
	cmd.Dir = dir
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s (in %s): %v\n%s", pkg, dir, err, b)
	}
	return bin, nil
}

// ccproxyBinary is the relay under test: CCPROXY_IMAGE_TEST_BINARY (the
// static binary `make unit` builds), else built once here.
func ccproxyBinary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("CCPROXY_IMAGE_TEST_BINARY"); p != "" {
		return p
	}
	if testing.Short() {
		t.Skip("builds the ccproxy binary; skipped with -short")
	}
	relayBinOnce.Do(func() {
		relayBin, relayBinErr = goBuild("..", "./cmd/ccproxy", "ccproxy", 5*time.Minute)
	})
	if relayBinErr != nil {
		t.Fatal(relayBinErr)
	}
	return relayBin
}

// promqlcheck builds tools/promql once. The first build downloads
// Prometheus's modules; later ones come from the Go build cache.
func promqlcheck(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds tools/promql (Prometheus's parser); skipped with -short")
	}
	checkerOnce.Do(func() {
		checkerBin, checkerErr = goBuild(checkerModule, ".", "promqlcheck", 10*time.Minute)
	})
	if checkerErr != nil {
		t.Fatal(checkerErr)
	}
	return checkerBin
}

// relayScrape is the /metrics page of a fresh relay, read once.
var (
	scrapeOnce sync.Once
	scrapeBody []byte
	scrapeErr  error
)

// freshRelayMetrics starts the real ccproxy as the port-forwarder Pod runs
// it (its ConfigMap's config file; one route per LISTEN_PORTS port to
// FORWARD_HOST, on loopback ports instead of the pod's), scrapes /metrics
// once before any connection, stops it, and returns the page.
func freshRelayMetrics(t *testing.T) []byte {
	t.Helper()
	bin := ccproxyBinary(t)
	scrapeOnce.Do(func() { scrapeBody, scrapeErr = scrapeFreshRelay(t, bin) })
	if scrapeErr != nil {
		t.Fatal(scrapeErr)
	}
	return scrapeBody
}

// socatRoutes are the port-forwarder Pod's upstreams, host:port.
func socatRoutes(t *testing.T) (upstreams []string, config string) {
	t.Helper()
	o := load(t, readManifest(t))
	c := o.container(t)
	host, ok := envValue(c, "FORWARD_HOST")
	if !ok {
		t.Fatal("FORWARD_HOST not set")
	}
	for _, p := range listenPortsEnv(t, c) {
		upstreams = append(upstreams, host+":"+strconv.Itoa(int(p)))
	}
	return upstreams, o.configMap.Data["ccproxy.yaml"]
}

func scrapeFreshRelay(t *testing.T, bin string) ([]byte, error) {
	upstreams, config := socatRoutes(t)
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "ccproxy.yaml")
	if err := os.WriteFile(cfgFile, []byte(config), 0o600); err != nil {
		return nil, err
	}
	args := []string{"--config", cfgFile, "--admin-listen", "127.0.0.1:0", "--log-format", "json"}
	for i, up := range upstreams {
		// Distinct loopback addresses: the relay rejects a listen
		// address given twice, and port 0 picks a free port.
		args = append(args, "--forward", fmt.Sprintf("127.0.0.%d:0=%s", i+1, up))
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	// Nothing from this environment configures the relay.
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "CCPROXY_") || strings.HasPrefix(k, "OTEL_") || k == "LISTEN_PORTS" || k == "FORWARD_HOST" || k == "LISTEN_PORT" || k == "FORWARD_PORT" {
			continue
		}
		cmd.Env = append(cmd.Env, kv)
	}
	cmd.Dir = dir
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	defer func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}()
	addr := make(chan string, 1)
	var logs bytes.Buffer
	var logMu sync.Mutex
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			logMu.Lock()
			logs.Write(append(sc.Bytes(), '\n'))
			logMu.Unlock()
			var rec struct {
				Msg    string `json:"msg"`
				Listen string `json:"listen"`
			}
			if json.Unmarshal(sc.Bytes(), &rec) == nil && rec.Msg == "admin endpoint" {
				addr <- rec.Listen
			}
		}
		close(addr)
	}()
	var admin string
	select {
	case a, ok := <-addr:
		if !ok {
			logMu.Lock()
			defer logMu.Unlock()
			return nil, fmt.Errorf("ccproxy exited before its admin endpoint was up:\n%s", logs.String())
		}
		admin = a
	case <-ctx.Done():
		return nil, errors.New("ccproxy: no admin endpoint within a minute")
	}
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get("http://" + admin + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /metrics: %s\n%s", resp.Status, body)
	}
	return body, nil
}

func parsePage(t *testing.T, page []byte) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(page))
	if err != nil {
		t.Fatalf("parsing /metrics: %v", err)
	}
	return fams
}

// A fresh relay, before its first connection, already serves every series
// the dashboard and the alerts read, at zero, with the label values they
// filter and group on.
func TestFreshRelayServesEverySeries(t *testing.T) {
	fams := parsePage(t, freshRelayMetrics(t))
	upstreams, _ := socatRoutes(t)
	for _, name := range []string{
		"ccproxy_connections_total", "ccproxy_probes_total", "ccproxy_connections_active",
		"ccproxy_forwarded_bytes_total", "ccproxy_connections_refused_total", "ccproxy_spans_dropped_total",
		"ccproxy_issuer_latency_seconds", "ccproxy_handshake_duration_seconds",
		"process_resident_memory_bytes", "go_memstats_heap_inuse_bytes", "go_gc_gomemlimit_bytes",
	} {
		if fams[name] == nil {
			t.Errorf("%s missing from a fresh relay's /metrics", name)
		}
	}
	modes := map[string][]string{} // upstream → failure modes
	for name, f := range fams {
		if !strings.HasPrefix(name, "ccproxy_") {
			continue
		}
		for _, m := range f.GetMetric() {
			v := m.GetCounter().GetValue() + m.GetGauge().GetValue() + float64(m.GetHistogram().GetSampleCount())
			if v != 0 {
				t.Errorf("%s %v = %v before any connection", name, m.GetLabel(), v)
			}
			if name != "ccproxy_connections_total" {
				continue
			}
			var up, mode string
			for _, l := range m.GetLabel() {
				switch l.GetName() {
				case "upstream":
					up = l.GetValue()
				case "failure_mode":
					mode = l.GetValue()
				}
			}
			modes[up] = append(modes[up], mode)
		}
	}
	for _, up := range upstreams {
		got := modes[up]
		slices.Sort(got)
		if !slices.Contains(got, "ok") || !slices.Contains(got, "lb_closed_early") || !slices.Contains(got, "issuer_timeout") {
			t.Errorf("upstream %s: failure modes %v, want every mode of the contract", up, got)
		}
		if first := modes[upstreams[0]]; !slices.Equal(got, first) {
			t.Errorf("upstream %s has modes %v, %s has %v: want the same set", up, got, upstreams[0], first)
		}
	}
	if len(modes) != len(upstreams) {
		t.Errorf("ccproxy_connections_total upstreams %d, want the pod's %d (%v)", len(modes), len(upstreams), upstreams)
	}
	if n := len(fams["ccproxy_connections_refused_total"].GetMetric()); n != len(upstreams) {
		t.Errorf("ccproxy_connections_refused_total: %d listen addresses, want %d", n, len(upstreams))
	}
}

// runChecker runs tools/promql on files against the page.
func runChecker(t *testing.T, page []byte, files ...string) (int, string) {
	t.Helper()
	bin := promqlcheck(t)
	pageFile := filepath.Join(t.TempDir(), "metrics.txt")
	if err := os.WriteFile(pageFile, page, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, append([]string{"-metrics", pageFile}, files...)...).CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, string(out)
	case errors.As(err, &ee):
		return ee.ExitCode(), string(out)
	}
	t.Fatalf("running %s: %v\n%s", bin, err, out)
	return -1, ""
}

// Every expression in deploy/monitoring parses with Prometheus's parser, the
// rules load as Prometheus loads them, the operator's objects decode
// strictly, and every metric and label name is on a fresh relay's /metrics
// (or is a label Prometheus adds through the PodMonitor).
func TestMonitoringAgainstLiveMetrics(t *testing.T) {
	page := freshRelayMetrics(t)
	code, out := runChecker(t, page, monitoringFiles(t)...)
	if code != 0 {
		t.Fatalf("promqlcheck exit %d:\n%s", code, out)
	}
	t.Log(strings.TrimSpace(out))
	if !strings.Contains(out, "promqlcheck: ok:") {
		t.Errorf("checker output without its summary:\n%s", out)
	}
}

// The check fails, naming the place, when a metric is renamed under the
// dashboard and the rules, or a label is misspelt: what keeps a rename from
// reaching an operator's Grafana.
func TestMonitoringCheckCatchesRenames(t *testing.T) {
	page := freshRelayMetrics(t)
	dir := t.TempDir()
	mutate := func(src, dst, from, to string) string {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(b, []byte(from)) {
			t.Fatalf("%s has no %q to rename", src, from)
		}
		p := filepath.Join(dir, dst)
		if err := os.WriteFile(p, bytes.ReplaceAll(b, []byte(from), []byte(to)), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	rules := mutate(rulesFile, "rules.yaml", "ccproxy_connections_total", "ccproxy_connection_total")
	dash := mutate(dashboardFile, "dashboard.json", `sum by (pod, listen)`, `sum by (pod, listen_address)`)
	code, out := runChecker(t, page, rules, dash)
	if code != 1 {
		t.Fatalf("promqlcheck exit %d, want 1:\n%s", code, out)
	}
	for _, want := range []string{
		`alert CcproxyCoordinatorConnectionsFailing: expr: unknown metric "ccproxy_connection_total"`,
		`no series under sum has label "listen_address"`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("checker output lacks %q:\n%s", want, out)
		}
	}

	// Without the fresh relay's zero series, the alerts would refer to
	// names a relay serves only after its first connection of each kind.
	var trimmed bytes.Buffer
	for _, line := range strings.SplitAfter(string(page), "\n") {
		if !strings.HasPrefix(line, "ccproxy_connections_refused_total") {
			trimmed.WriteString(line)
		}
	}
	code, out = runChecker(t, trimmed.Bytes(), rulesFile)
	if code != 1 || !strings.Contains(out, "ccproxy_connections_refused_total") {
		t.Errorf("rules checked against a page without ccproxy_connections_refused_total: exit %d\n%s", code, out)
	}
}

// podMonitor is the part of the PodMonitor these tests compare with the
// relay manifests (tools/promql decodes it strictly into the operator's
// types).
type podMonitor struct {
	Metadata struct {
		Name string `json:"name"`
	} `json:"metadata"`
	Spec struct {
		Selector struct {
			MatchLabels map[string]string `json:"matchLabels"`
		} `json:"selector"`
		PodMetricsEndpoints []struct {
			Port string `json:"port"`
			Path string `json:"path"`
		} `json:"podMetricsEndpoints"`
	} `json:"spec"`
}

// The PodMonitor scrapes the admin port of every ccproxy pod in deploy/:
// its selector matches their labels (and not only one of them), and its
// port name is their admin container port, the one their prometheus.io
// annotations and --admin-listen name.
func TestPodMonitorSelectsEveryRelay(t *testing.T) {
	b, err := os.ReadFile(podMonitorFile)
	if err != nil {
		t.Fatal(err)
	}
	docs, err := splitDocuments(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(docs) != 1 {
		t.Fatalf("%s: %d documents, want 1 PodMonitor", podMonitorFile, len(docs))
	}
	var pm podMonitor
	if err := yaml.Unmarshal(docs[0], &pm); err != nil {
		t.Fatal(err)
	}
	if len(pm.Spec.Selector.MatchLabels) == 0 || len(pm.Spec.PodMetricsEndpoints) != 1 {
		t.Fatalf("PodMonitor: want a matchLabels selector and one endpoint, got %+v", pm.Spec)
	}
	sel := labels.SelectorFromSet(pm.Spec.Selector.MatchLabels)
	ep := pm.Spec.PodMetricsEndpoints[0]

	type relayPod struct {
		name        string
		labels      labels.Set
		annotations map[string]string
		container   corev1.Container
	}
	var pods []relayPod
	forEachRelay(t, func(t *testing.T, m relayManifest, o objects) {
		meta := o.workload()
		ann := meta.Annotations
		if o.deploy != nil {
			ann = o.deploy.Spec.Template.Annotations
		}
		pods = append(pods, relayPod{m.file, o.podLabels(), ann, o.container(t)})
	})
	tun := loadTunnel(t)
	pods = append(pods, relayPod{tunnelFile, tun.deploy.Spec.Template.Labels, tun.deploy.Spec.Template.Annotations, podContainer(t, &tun.deploy.Spec.Template.Spec)})

	for _, p := range pods {
		if !sel.Matches(p.labels) {
			t.Errorf("%s: the PodMonitor's selector %s does not match the pod's labels %v", p.name, sel, p.labels)
		}
		port, ok := portByName(p.container, ep.Port, 0)
		if !ok {
			t.Errorf("%s: no container port named %q for the PodMonitor", p.name, ep.Port)
			continue
		}
		if got := p.annotations["prometheus.io/port"]; got != strconv.Itoa(int(port)) {
			t.Errorf("%s: port %q is %d, prometheus.io/port says %q", p.name, ep.Port, port, got)
		}
		if got := p.annotations["prometheus.io/path"]; got != ep.Path {
			t.Errorf("%s: PodMonitor path %q, prometheus.io/path %q", p.name, ep.Path, got)
		}
		admin, _ := flagValue(p.container.Args, "--admin-listen")
		if !strings.HasSuffix(admin, ":"+strconv.Itoa(int(port))) {
			t.Errorf("%s: --admin-listen %q is not port %s (%d)", p.name, admin, ep.Port, port)
		}
	}
	// Only ccproxy's pods: the Coordinator's own (app.kubernetes.io/name:
	// coordinator) must not match.
	if sel.Matches(labels.Set{"app.kubernetes.io/name": "coordinator"}) {
		t.Errorf("the PodMonitor's selector %s matches any pod", sel)
	}
}

// The memory panel's limit line and the memory alert's threshold are the
// pods' memory limit.
func TestMonitoringMemoryLimit(t *testing.T) {
	var limits []int64
	forEachRelay(t, func(t *testing.T, _ relayManifest, o objects) {
		c := o.container(t)
		limits = append(limits, c.Resources.Limits.Memory().Value())
	})
	tun := loadTunnel(t)
	tc := podContainer(t, &tun.deploy.Spec.Template.Spec)
	limits = append(limits, tc.Resources.Limits.Memory().Value())
	for _, l := range limits {
		if l != limits[0] || l <= 0 {
			t.Fatalf("memory limits %v: the dashboard and alert assume one limit for every ccproxy pod", limits)
		}
	}
	limit := strconv.FormatInt(limits[0], 10)

	rules, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	if m := regexp.MustCompile(`process_resident_memory_bytes\)\s*>\s*0\.9 \* (\d+)`).FindSubmatch(rules); m == nil || string(m[1]) != limit {
		t.Errorf("%s: the memory alert's threshold is not 0.9 × the pods' limit %s", rulesFile, limit)
	}

	var d struct {
		Panels []struct {
			Title       string `json:"title"`
			FieldConfig struct {
				Defaults struct {
					Thresholds struct {
						Steps []struct {
							Value *float64 `json:"value"`
						} `json:"steps"`
					} `json:"thresholds"`
				} `json:"defaults"`
			} `json:"fieldConfig"`
		} `json:"panels"`
	}
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, p := range d.Panels {
		if !strings.Contains(p.Title, "Memory") {
			continue
		}
		found = true
		var steps []float64
		for _, s := range p.FieldConfig.Defaults.Thresholds.Steps {
			if s.Value != nil {
				steps = append(steps, *s.Value)
			}
		}
		if !slices.Contains(steps, float64(limits[0])) {
			t.Errorf("panel %q: threshold lines %v, want the pods' limit %s", p.Title, steps, limit)
		}
		if !strings.Contains(p.Title, "50Mi") || limits[0] != 50<<20 {
			t.Errorf("panel %q names a limit other than the pods' %s bytes", p.Title, limit)
		}
	}
	if !found {
		t.Errorf("%s: no memory panel", dashboardFile)
	}
}

// The README says how to install each file, with commands that name files
// that exist.
func TestMonitoringDocumented(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	for _, f := range []string{rulesFile, podMonitorFile} {
		re := regexp.MustCompile(`kubectl apply( -n "\$NAMESPACE")? -f deploy/` + regexp.QuoteMeta(f))
		if !re.MatchString(readme) {
			t.Errorf("README.md does not say `kubectl apply -f deploy/%s`", f)
		}
	}
	if !strings.Contains(readme, "deploy/"+dashboardFile) {
		t.Errorf("README.md does not name deploy/%s", dashboardFile)
	}
	for _, m := range regexp.MustCompile(`deploy/monitoring/[A-Za-z0-9._-]+`).FindAllString(readme, -1) {
		if _, err := os.Stat(strings.TrimPrefix(m, "deploy/")); err != nil {
			t.Errorf("README.md names %s: %v", m, err)
		}
	}
	// Each alert is explained.
	rules, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range regexp.MustCompile(`- alert: (\w+)`).FindAllStringSubmatch(string(rules), -1) {
		if !strings.Contains(readme, m[1]) {
			t.Errorf("README.md does not explain alert %s", m[1])
		}
	}
}
