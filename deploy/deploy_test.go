package deploy

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

const (
	// The drop-in for Contrast's socat pod: a bare Pod with its name.
	manifestFile = "socat-replacement.yaml"
	appName      = "port-forwarder-coordinator"
	// The same pod spec under a Deployment, named so that it runs beside
	// the Pod without either selecting the other's pods.
	deploymentFile    = "socat-replacement-deployment.yaml"
	deploymentAppName = "ccproxy-coordinator"
	// The container name of Contrast's port-forwarder pod.
	containerName = "port-forwarder"
	nonrootUID    = 65532
)

// The ports Contrast's port-forwarder relays for the Coordinator.
var coordinatorPorts = []int32{1313, 1314, 7777, 8200}

var digestRef = regexp.MustCompile(`@sha256:[0-9a-f]{64}$`)

// relayManifest is one of the port-forwarder manifests: its file, the
// embedded copy, the name of its workload and Service, and whether the
// workload is the bare Pod or the Deployment.
type relayManifest struct {
	file     string
	embedded []byte
	name     string
	kind     string
}

var relayManifests = []relayManifest{
	{manifestFile, SocatReplacement, appName, "Pod"},
	{deploymentFile, SocatReplacementDeployment, deploymentAppName, "Deployment"},
}

// forEachRelay runs f on each port-forwarder manifest, decoded.
func forEachRelay(t *testing.T, f func(t *testing.T, m relayManifest, o objects)) {
	t.Helper()
	for _, m := range relayManifests {
		t.Run(m.file, func(t *testing.T) {
			o := load(t, readFile(t, m))
			f(t, m, o)
		})
	}
}

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

// decodeStrict decodes one document into the Kubernetes API type its kind
// names, rejecting duplicate keys, unknown fields and unexpected kinds or
// API versions: a typo in a field name must fail here, not be silently
// dropped by the API server. This is the offline part of what
// `kubectl apply --dry-run=client --validate=strict` checks.
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
	var wantAPI string
	switch tm.Kind {
	case "Deployment":
		obj, wantAPI = &appsv1.Deployment{}, "apps/v1"
	case "Pod":
		obj, wantAPI = &corev1.Pod{}, "v1"
	case "Service":
		obj, wantAPI = &corev1.Service{}, "v1"
	case "ConfigMap":
		obj, wantAPI = &corev1.ConfigMap{}, "v1"
	default:
		return nil, fmt.Errorf("unexpected kind %q", tm.Kind)
	}
	if tm.APIVersion != wantAPI {
		return nil, fmt.Errorf("%s: apiVersion %q, want %q", tm.Kind, tm.APIVersion, wantAPI)
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

// objects is one port-forwarder manifest decoded: its workload (the bare
// Pod or the Deployment, exactly one of them) and the Service and
// ConfigMap beside it.
type objects struct {
	pod       *corev1.Pod
	deploy    *appsv1.Deployment
	service   *corev1.Service
	configMap *corev1.ConfigMap
}

// workload is the Pod's or the Deployment's own metadata.
func (o objects) workload() metav1.ObjectMeta {
	if o.pod != nil {
		return o.pod.ObjectMeta
	}
	return o.deploy.ObjectMeta
}

// podLabels are the labels the relay's pod carries.
func (o objects) podLabels() labels.Set {
	if o.pod != nil {
		return o.pod.Labels
	}
	return o.deploy.Spec.Template.Labels
}

// podSpec is the spec the relay's pod runs.
func (o objects) podSpec() *corev1.PodSpec {
	if o.pod != nil {
		return &o.pod.Spec
	}
	return &o.deploy.Spec.Template.Spec
}

// selectors are the label selectors in the manifest that pick pods: the
// Service's, and the Deployment's if there is one.
func (o objects) selectors() map[string]map[string]string {
	sel := map[string]map[string]string{"Service " + o.service.Name: o.service.Spec.Selector}
	if o.deploy != nil && o.deploy.Spec.Selector != nil {
		sel["Deployment "+o.deploy.Name] = o.deploy.Spec.Selector.MatchLabels
	}
	return sel
}

func (o objects) container(t *testing.T) corev1.Container {
	t.Helper()
	return podContainer(t, o.podSpec())
}

func load(t *testing.T, data []byte) objects {
	t.Helper()
	docs, err := splitDocuments(data)
	if err != nil {
		t.Fatal(err)
	}
	var o objects
	for i, doc := range docs {
		obj, err := decodeStrict(doc)
		if err != nil {
			t.Fatalf("document %d: %v", i+1, err)
		}
		switch v := obj.(type) {
		case *corev1.Pod:
			if o.pod != nil || o.deploy != nil {
				t.Fatal("more than one workload (Pod or Deployment)")
			}
			o.pod = v
		case *appsv1.Deployment:
			if o.pod != nil || o.deploy != nil {
				t.Fatal("more than one workload (Pod or Deployment)")
			}
			o.deploy = v
		case *corev1.Service:
			if o.service != nil {
				t.Fatal("more than one Service")
			}
			o.service = v
		case *corev1.ConfigMap:
			if o.configMap != nil {
				t.Fatal("more than one ConfigMap")
			}
			o.configMap = v
		}
	}
	if (o.pod == nil && o.deploy == nil) || o.service == nil || o.configMap == nil {
		t.Fatalf("want a Pod or a Deployment, a Service and a ConfigMap; got %+v", o)
	}
	return o
}

// readFile reads a port-forwarder manifest and checks that the embedded
// copy is the same.
func readFile(t *testing.T, m relayManifest) []byte {
	t.Helper()
	b, err := os.ReadFile(m.file)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, m.embedded) {
		t.Fatalf("embedded copy of %s differs from the file", m.file)
	}
	return b
}

// readManifest reads socat-replacement.yaml, the Pod.
func readManifest(t *testing.T) []byte {
	t.Helper()
	return readFile(t, relayManifests[0])
}

func TestDecodeStrictRejects(t *testing.T) {
	tests := []struct {
		name, doc, wantErr string
	}{
		{"unknown field", "apiVersion: apps/v1\nkind: Deployment\nspec:\n  replicaz: 1\n", "unknown field"},
		{"unknown nested field", "apiVersion: v1\nkind: Service\nspec:\n  ports:\n  - port: 1\n    targetPorts: 2\n", "unknown field"},
		{"unknown Pod field", "apiVersion: v1\nkind: Pod\nspec:\n  containers:\n  - name: a\n    env:\n    - name: X\n      valu: y\n", "unknown field"},
		{"Deployment field in a Pod", "apiVersion: v1\nkind: Pod\nspec:\n  replicas: 1\n", "unknown field"},
		{"duplicate key", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n  name: b\n", "already set"},
		{"unexpected kind", "apiVersion: v1\nkind: Secret\n", "unexpected kind"},
		{"wrong apiVersion", "apiVersion: extensions/v1beta1\nkind: Deployment\n", "apiVersion"},
		{"wrong Pod apiVersion", "apiVersion: apps/v1\nkind: Pod\n", "apiVersion"},
		{"wrong type", "apiVersion: apps/v1\nkind: Deployment\nspec:\n  replicas: one\n", "cannot unmarshal"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := decodeStrict([]byte(tt.doc))
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("decodeStrict: %v, want error containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestSplitDocuments(t *testing.T) {
	docs, err := splitDocuments([]byte("# header only\n---\na: 1\n---\n# comment\n---\nb: 2\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(docs) != 2 {
		t.Errorf("got %d documents, want 2: %q", len(docs), docs)
	}
}

func podContainer(t *testing.T, spec *corev1.PodSpec) corev1.Container {
	t.Helper()
	if len(spec.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(spec.Containers))
	}
	return spec.Containers[0]
}

// container is a Deployment's one container.
func container(t *testing.T, d *appsv1.Deployment) corev1.Container {
	t.Helper()
	return podContainer(t, &d.Spec.Template.Spec)
}

// listenPortsEnv parses LISTEN_PORTS as ccproxy (and the socat pod's shell
// loop) does: separated by spaces or commas.
func listenPortsEnv(t *testing.T, c corev1.Container) []int32 {
	t.Helper()
	lp, ok := envValue(c, "LISTEN_PORTS")
	if !ok {
		t.Fatal("LISTEN_PORTS not set")
	}
	var listen []int32
	for _, f := range strings.FieldsFunc(lp, func(r rune) bool { return r == ' ' || r == ',' }) {
		n, err := strconv.ParseInt(f, 10, 32)
		if err != nil {
			t.Fatalf("LISTEN_PORTS %q: %v", lp, err)
		}
		listen = append(listen, int32(n))
	}
	return listen
}

// socat-replacement.yaml is what Contrast's docs deploy, with ccproxy in
// it: a bare Pod that `kubectl port-forward pod/port-forwarder-coordinator`
// reaches, with the socat pod's name, label, container name, memory and
// environment (internal/kuberesource's PortForwarderForService).
func TestPodIsContrastsPortForwarder(t *testing.T) {
	o := load(t, readManifest(t))
	p := o.pod
	if p == nil {
		t.Fatalf("%s has no Pod: `kubectl port-forward pod/%s` would fail with NotFound", manifestFile, appName)
	}
	if p.Kind != "Pod" || p.APIVersion != "v1" {
		t.Errorf("%s %s, want v1 Pod", p.APIVersion, p.Kind)
	}
	if p.Name != appName || p.GenerateName != "" {
		t.Errorf("Pod name %q (generateName %q), want exactly %q", p.Name, p.GenerateName, appName)
	}
	if got := p.Labels["app.kubernetes.io/name"]; got != appName {
		t.Errorf("Pod label app.kubernetes.io/name %q, want %q", got, appName)
	}
	if len(p.OwnerReferences) != 0 {
		t.Error("Pod has ownerReferences: it must be a bare Pod")
	}
	// Nothing else restarts ccproxy in a bare Pod.
	if rp := p.Spec.RestartPolicy; rp != "" && rp != corev1.RestartPolicyAlways {
		t.Errorf("restartPolicy %s, want Always: a bare Pod has no controller to replace it", rp)
	}

	c := o.container(t)
	if c.Name != containerName {
		t.Errorf("container %q, want %q", c.Name, containerName)
	}
	if got := listenPortsEnv(t, c); !slices.Equal(got, coordinatorPorts) {
		t.Errorf("LISTEN_PORTS %v, want %v", got, coordinatorPorts)
	}
	if fh, ok := envValue(c, "FORWARD_HOST"); !ok || fh != "coordinator" {
		t.Errorf("FORWARD_HOST %q, want coordinator", fh)
	}
	want := resource.MustParse("50Mi")
	req, lim := c.Resources.Requests[corev1.ResourceMemory], c.Resources.Limits[corev1.ResourceMemory]
	if req.Cmp(want) != 0 || lim.Cmp(want) != 0 {
		t.Errorf("memory request %s limit %s, want both 50Mi", req.String(), lim.String())
	}
	var ports []int32
	for _, cp := range c.Ports {
		ports = append(ports, cp.ContainerPort)
	}
	for _, cp := range coordinatorPorts {
		if !slices.Contains(ports, cp) {
			t.Errorf("container does not expose %d (has %v)", cp, ports)
		}
	}
	if !strings.Contains(c.Image, "ccproxy@") || strings.Contains(c.Image, "socat") {
		t.Errorf("image %q, want ccproxy's", c.Image)
	}
	// The image's entrypoint is /ccproxy: no shell wrapper, no socat.
	if len(c.Command) != 0 {
		t.Errorf("command %q overrides the image's entrypoint", c.Command)
	}
}

func TestManifestNamesAndLabels(t *testing.T) {
	forEachRelay(t, func(t *testing.T, m relayManifest, o objects) {
		w := o.workload()
		if o.pod != nil && m.kind != "Pod" || o.deploy != nil && m.kind != "Deployment" {
			t.Fatalf("workload is not a %s", m.kind)
		}
		for _, meta := range []metav1.ObjectMeta{w, o.service.ObjectMeta, o.configMap.ObjectMeta} {
			if got := meta.Labels["app.kubernetes.io/name"]; got != m.name {
				t.Errorf("%s: label app.kubernetes.io/name %q, want %q", meta.Name, got, m.name)
			}
			if meta.Namespace != "" {
				t.Errorf("%s: namespace %q is set; the manifest must apply into the Coordinator's namespace", meta.Name, meta.Namespace)
			}
		}
		if w.Name != m.name || o.service.Name != m.name {
			t.Errorf("%s %q, Service %q, want both %q", m.kind, w.Name, o.service.Name, m.name)
		}
		if want := m.name + "-config"; o.configMap.Name != want {
			t.Errorf("ConfigMap %q, want %q", o.configMap.Name, want)
		}
		pod := o.podLabels()
		if got := pod["app.kubernetes.io/name"]; got != m.name {
			t.Errorf("pod label app.kubernetes.io/name %q, want %q", got, m.name)
		}
		for what, sel := range o.selectors() {
			if len(sel) == 0 || !labels.SelectorFromSet(sel).Matches(pod) {
				t.Errorf("%s selector %v does not match the relay's pod labels %v", what, sel, pod)
			}
		}
		if o.deploy != nil && (o.deploy.Spec.Replicas == nil || *o.deploy.Spec.Replicas != 1) {
			t.Errorf("replicas %v, want 1", o.deploy.Spec.Replicas)
		}
		if c := o.container(t); c.Name != containerName {
			t.Errorf("container %q, want %q (the socat pod's name)", c.Name, containerName)
		}
	})
}

// The Pod, the Deployment variant and the tunnel can all be applied in one
// namespace: no Service sends traffic to another manifest's pods, and no
// Deployment selects (and so adopts, or scales away) another's pods; the
// Deployment variant in particular must leave the bare Pod, and the socat
// pod it replaces, alone.
func TestManifestsDoNotSelectEachOther(t *testing.T) {
	type entry struct {
		file      string
		pod       labels.Set
		selectors map[string]map[string]string
	}
	var all []entry
	for _, m := range relayManifests {
		o := load(t, readFile(t, m))
		all = append(all, entry{m.file, o.podLabels(), o.selectors()})
	}
	tun := loadTunnel(t)
	all = append(all, entry{tunnelFile, tun.deploy.Spec.Template.Labels, map[string]map[string]string{
		"Service " + tun.service.Name:   tun.service.Spec.Selector,
		"Deployment " + tun.deploy.Name: tun.deploy.Spec.Selector.MatchLabels,
	}})
	// Contrast's own socat pod, which the Pod replaces; the Deployment and
	// the tunnel must not pick it up either.
	socat := labels.Set{"app.kubernetes.io/name": appName}
	for _, a := range all {
		for _, b := range all {
			if a.file == b.file {
				continue
			}
			for what, sel := range a.selectors {
				if len(sel) == 0 {
					t.Errorf("%s: %s has an empty selector, which selects every pod", a.file, what)
					continue
				}
				if labels.SelectorFromSet(sel).Matches(b.pod) {
					t.Errorf("%s: %s selects the pods of %s (%v)", a.file, what, b.file, b.pod)
				}
				if a.file != manifestFile && labels.SelectorFromSet(sel).Matches(socat) {
					t.Errorf("%s: %s selects Contrast's socat pod", a.file, what)
				}
			}
		}
	}
}

// The Deployment variant runs exactly the Pod's container and pod settings,
// with its own ConfigMaps, so the two cannot drift apart.
func TestDeploymentVariantMatchesPod(t *testing.T) {
	pod := load(t, readFile(t, relayManifests[0]))
	dep := load(t, readFile(t, relayManifests[1]))

	want := pod.podSpec().DeepCopy()
	for i := range want.Volumes {
		if cm := want.Volumes[i].ConfigMap; cm != nil {
			cm.Name = strings.Replace(cm.Name, appName, deploymentAppName, 1)
		}
	}
	// A Deployment's pods must be restartPolicy Always; the Pod spells it out.
	got := dep.podSpec().DeepCopy()
	if got.RestartPolicy == "" {
		got.RestartPolicy = want.RestartPolicy
	}
	if !equality.Semantic.DeepEqual(got, want) {
		gj, _ := json.MarshalIndent(got, "", "  ")
		wj, _ := json.MarshalIndent(want, "", "  ")
		t.Errorf("%s's pod spec differs from %s's (ConfigMap names mapped %s → %s): %s",
			deploymentFile, manifestFile, appName, deploymentAppName, firstDifference(gj, wj))
	}
	if !equality.Semantic.DeepEqual(dep.configMap.Data, pod.configMap.Data) {
		t.Errorf("ConfigMap data differs between %s and %s", deploymentFile, manifestFile)
	}
	if !equality.Semantic.DeepEqual(dep.service.Spec.Ports, pod.service.Spec.Ports) {
		t.Errorf("Service ports differ between %s and %s", deploymentFile, manifestFile)
	}
	if !equality.Semantic.DeepEqual(dep.deploy.Spec.Template.Annotations, pod.pod.Annotations) {
		t.Errorf("pod annotations differ between %s and %s", deploymentFile, manifestFile)
	}
}

// portByName resolves a probe or Service target port (name or number)
// against the container's ports.
func portByName(c corev1.Container, name string, num int32) (int32, bool) {
	for _, p := range c.Ports {
		if (name != "" && p.Name == name) || (name == "" && p.ContainerPort == num) {
			return p.ContainerPort, true
		}
	}
	return 0, false
}

func flagValue(args []string, flag string) (string, bool) {
	for i, a := range args {
		if v, ok := strings.CutPrefix(a, flag+"="); ok {
			return v, true
		}
		if a == flag && i+1 < len(args) {
			return args[i+1], true
		}
	}
	return "", false
}

func envValue(c corev1.Container, name string) (string, bool) {
	for _, e := range c.Env {
		if e.Name == name {
			return e.Value, true
		}
	}
	return "", false
}

func TestManifestPortsAndEnv(t *testing.T) {
	forEachRelay(t, func(t *testing.T, _ relayManifest, o objects) {
		c := o.container(t)

		var containerPorts []int32
		for _, p := range c.Ports {
			containerPorts = append(containerPorts, p.ContainerPort)
			if p.Protocol != "" && p.Protocol != corev1.ProtocolTCP {
				t.Errorf("port %d protocol %s", p.ContainerPort, p.Protocol)
			}
		}
		for _, p := range append(slices.Clone(coordinatorPorts), 9090) {
			if !slices.Contains(containerPorts, p) {
				t.Errorf("container does not expose %d (has %v)", p, containerPorts)
			}
		}

		// LISTEN_PORTS: the same variable, and syntax, as the socat pod.
		if listen := listenPortsEnv(t, c); !slices.Equal(listen, coordinatorPorts) {
			t.Errorf("LISTEN_PORTS %v, want %v", listen, coordinatorPorts)
		}
		if fh, _ := envValue(c, "FORWARD_HOST"); fh != "coordinator" {
			t.Errorf("FORWARD_HOST %q, want coordinator", fh)
		}

		// Every Service port reaches a container port.
		var svcPorts []int32
		for _, sp := range o.service.Spec.Ports {
			svcPorts = append(svcPorts, sp.Port)
			got, ok := portByName(c, sp.TargetPort.StrVal, sp.TargetPort.IntVal)
			if !ok {
				t.Errorf("Service port %s targets %s, which the container does not expose", sp.Name, sp.TargetPort.String())
			} else if got != sp.Port {
				t.Errorf("Service port %d forwards to container port %d", sp.Port, got)
			}
		}
		for _, p := range coordinatorPorts {
			if !slices.Contains(svcPorts, p) {
				t.Errorf("Service does not expose %d", p)
			}
		}
	})
}

func TestManifestProbes(t *testing.T) {
	forEachRelay(t, func(t *testing.T, _ relayManifest, o objects) {
		c := o.container(t)
		admin, ok := flagValue(c.Args, "--admin-listen")
		if !ok {
			t.Fatal("no --admin-listen argument")
		}
		_, adminPort, _ := strings.Cut(admin, ":")

		for _, tc := range []struct {
			name  string
			probe *corev1.Probe
			path  string
		}{
			{"readiness", c.ReadinessProbe, "/readyz"},
			{"liveness", c.LivenessProbe, "/healthz"},
		} {
			if tc.probe == nil || tc.probe.HTTPGet == nil {
				t.Errorf("%s probe: want an httpGet probe", tc.name)
				continue
			}
			g := tc.probe.HTTPGet
			if g.Path != tc.path {
				t.Errorf("%s probe path %q, want %q", tc.name, g.Path, tc.path)
			}
			port, ok := portByName(c, g.Port.StrVal, g.Port.IntVal)
			if !ok {
				t.Errorf("%s probe port %s is not a container port", tc.name, g.Port.String())
				continue
			}
			if strconv.Itoa(int(port)) != adminPort {
				t.Errorf("%s probe on port %d, but ccproxy's admin endpoint listens on %q", tc.name, port, admin)
			}
			// The admin handler bounds /readyz at 2 s; a shorter probe timeout
			// would turn a clear 503 into an opaque timeout.
			if tc.probe.TimeoutSeconds != 0 && tc.probe.TimeoutSeconds <= 2 {
				t.Errorf("%s probe timeoutSeconds %d, want > 2", tc.name, tc.probe.TimeoutSeconds)
			}
		}
	})
}

func TestManifestResources(t *testing.T) {
	forEachRelay(t, func(t *testing.T, _ relayManifest, o objects) {
		c := o.container(t)
		want := resource.MustParse("50Mi")
		req, lim := c.Resources.Requests[corev1.ResourceMemory], c.Resources.Limits[corev1.ResourceMemory]
		if req.Cmp(want) != 0 || lim.Cmp(want) != 0 {
			t.Errorf("memory request %s limit %s, want both 50Mi", req.String(), lim.String())
		}
		if _, ok := c.Resources.Limits[corev1.ResourceCPU]; ok {
			t.Error("CPU limit set: throttling would show up as handshake latency")
		}
		cpu, ok := c.Resources.Requests[corev1.ResourceCPU]
		if !ok || cpu.Cmp(resource.MustParse("100m")) > 0 || cpu.IsZero() {
			t.Errorf("cpu request %s, want a small non-zero request (at most 100m)", cpu.String())
		}
		// GOMEMLIMIT below the container limit, so the GC works before the OOM killer does.
		if v, ok := envValue(c, "GOMEMLIMIT"); ok {
			q, err := resource.ParseQuantity(strings.TrimSuffix(strings.TrimSuffix(v, "B"), "i") + "i")
			if err != nil || q.Cmp(lim) >= 0 {
				t.Errorf("GOMEMLIMIT %q, want below the memory limit %s", v, lim.String())
			}
		}
	})
}

// The kubelet must not kill ccproxy while it drains and flushes spans: a
// bare Pod in particular is deleted, not rolled, to change it.
func TestManifestTerminationGrace(t *testing.T) {
	forEachRelay(t, func(t *testing.T, _ relayManifest, o objects) {
		c := o.container(t)
		drain := defaultDrainTimeout
		if v, ok := flagValue(c.Args, "--drain-timeout"); ok {
			d, err := time.ParseDuration(v)
			if err != nil {
				t.Fatalf("--drain-timeout=%s: %v", v, err)
			}
			drain = d
		}
		grace := 30 * time.Second // the Kubernetes default
		if g := o.podSpec().TerminationGracePeriodSeconds; g != nil {
			grace = time.Duration(*g) * time.Second
		}
		if grace < drain+spanFlushTimeout {
			t.Errorf("terminationGracePeriodSeconds %s, want at least drain %s + span flush %s", grace, drain, spanFlushTimeout)
		}
	})
}

func TestManifestSecurity(t *testing.T) {
	forEachRelay(t, func(t *testing.T, _ relayManifest, o objects) {
		spec := o.podSpec()
		c := o.container(t)

		if spec.RuntimeClassName != nil {
			t.Errorf("runtimeClassName %q set: the relay must be an ordinary pod so kubectl port-forward works", *spec.RuntimeClassName)
		}
		if spec.HostNetwork || spec.HostPID || spec.HostIPC {
			t.Error("host namespaces in use")
		}
		if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
			t.Error("automountServiceAccountToken should be false: ccproxy never calls the API server")
		}
		if spec.EnableServiceLinks == nil || *spec.EnableServiceLinks {
			t.Error("enableServiceLinks should be false: service links can inject LISTEN_PORT/FORWARD_PORT/CCPROXY_* variables")
		}

		psc, sc := spec.SecurityContext, c.SecurityContext
		if psc == nil || sc == nil {
			t.Fatal("pod and container securityContext must both be set")
		}
		uid := sc.RunAsUser
		if uid == nil {
			uid = psc.RunAsUser
		}
		if uid == nil || *uid != nonrootUID {
			t.Errorf("runAsUser %v, want %d", uid, nonrootUID)
		}
		if psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot {
			t.Error("pod runAsNonRoot not true")
		}
		checks := []struct {
			what string
			ok   bool
		}{
			{"allowPrivilegeEscalation: false", sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation},
			{"readOnlyRootFilesystem: true", sc.ReadOnlyRootFilesystem != nil && *sc.ReadOnlyRootFilesystem},
			{"not privileged", sc.Privileged == nil || !*sc.Privileged},
			{"capabilities drop ALL", sc.Capabilities != nil && slices.Contains(sc.Capabilities.Drop, "ALL")},
			{"no added capabilities", sc.Capabilities == nil || len(sc.Capabilities.Add) == 0},
			{"seccomp RuntimeDefault", seccompDefault(sc.SeccompProfile, psc.SeccompProfile)},
		}
		for _, ch := range checks {
			if !ch.ok {
				t.Errorf("container security: want %s", ch.what)
			}
		}

		if !digestRef.MatchString(c.Image) {
			t.Errorf("image %q is not pinned by digest", c.Image)
		}
		if !strings.Contains(c.Image, "ccproxy@") {
			t.Errorf("image %q is not the ccproxy image", c.Image)
		}
	})
}

func seccompDefault(container, pod *corev1.SeccompProfile) bool {
	p := container
	if p == nil {
		p = pod
	}
	return p != nil && p.Type == corev1.SeccompProfileTypeRuntimeDefault
}

// Every path ccproxy writes or reads is on a volume: the root filesystem is
// read-only, so the trace file must live on the emptyDir and the config
// must come from the ConfigMap.
func TestManifestVolumes(t *testing.T) {
	forEachRelay(t, func(t *testing.T, m relayManifest, o objects) {
		spec := o.podSpec()
		c := o.container(t)

		vols := make(map[string]corev1.Volume)
		for _, v := range spec.Volumes {
			vols[v.Name] = v
		}
		mounts := make(map[string]corev1.Volume) // mount path → volume
		var paths []string
		for _, vm := range c.VolumeMounts {
			v, ok := vols[vm.Name]
			if !ok {
				t.Errorf("mount %s refers to missing volume %q", vm.MountPath, vm.Name)
				continue
			}
			mounts[vm.MountPath] = v
			paths = append(paths, vm.MountPath)
		}
		// Nested mounts would need a mount point inside a read-only volume.
		for _, a := range paths {
			for _, b := range paths {
				if a != b && strings.HasPrefix(b, a+"/") {
					t.Errorf("mount %s is nested inside %s", b, a)
				}
			}
		}
		volumeFor := func(file string) (corev1.Volume, bool) {
			v, ok := mounts[path.Dir(file)]
			return v, ok
		}

		traceFile, ok := flagValue(c.Args, "--trace-file")
		if !ok {
			t.Error("no --trace-file argument")
		} else if v, ok := volumeFor(traceFile); !ok || v.EmptyDir == nil {
			t.Errorf("--trace-file %s is not on an emptyDir mount", traceFile)
		} else if v.EmptyDir.SizeLimit == nil {
			t.Error("the traces emptyDir has no sizeLimit")
		} else {
			// The rotated trace files must fit: the active file and the
			// kept ones, each at most trace-file-max-size MiB.
			var cfg map[string]any
			if err := yaml.Unmarshal([]byte(o.configMap.Data["ccproxy.yaml"]), &cfg); err != nil {
				t.Fatal(err)
			}
			size, sok := cfg["trace-file-max-size"].(float64) // JSON numbers
			files, fok := cfg["trace-file-max-files"].(float64)
			if !sok || !fok || size <= 0 || files <= 0 {
				t.Errorf("the ConfigMap bounds no trace file: trace-file-max-size %v, trace-file-max-files %v", cfg["trace-file-max-size"], cfg["trace-file-max-files"])
			} else if need := int64(size) << 20 * int64(files+1); need > v.EmptyDir.SizeLimit.Value() {
				t.Errorf("trace files may take %d MiB (%v × %v MiB), over the emptyDir's %s", need>>20, files+1, size, v.EmptyDir.SizeLimit)
			}
		}

		cfgFile, ok := flagValue(c.Args, "--config")
		if !ok {
			t.Fatal("no --config argument")
		}
		v, ok := volumeFor(cfgFile)
		if !ok || v.ConfigMap == nil || v.ConfigMap.Name != o.configMap.Name {
			t.Fatalf("--config %s is not on the %s ConfigMap", cfgFile, o.configMap.Name)
		}
		if _, ok := o.configMap.Data[path.Base(cfgFile)]; !ok {
			t.Errorf("ConfigMap %s has no key %s", o.configMap.Name, path.Base(cfgFile))
		}

		var manifestVol *corev1.Volume
		for _, v := range spec.Volumes {
			if v.ConfigMap != nil && v.ConfigMap.Name != o.configMap.Name {
				manifestVol = &v
			}
		}
		if manifestVol == nil {
			t.Fatal("no manifest ConfigMap volume")
		}
		if want := m.name + "-manifest"; manifestVol.ConfigMap.Name != want {
			t.Errorf("manifest ConfigMap %q, want %q (deploy/README.md creates that one)", manifestVol.ConfigMap.Name, want)
		}
		if manifestVol.ConfigMap.Optional == nil || !*manifestVol.ConfigMap.Optional {
			t.Errorf("manifest ConfigMap volume %s must be optional: the relay starts before a manifest exists", manifestVol.Name)
		}
	})
}

// The embedded ccproxy.yaml is strict YAML, and its keys exist in the
// documented config (configs/ccproxy.yaml) once that file is there.
func TestManifestConfigFile(t *testing.T) {
	documented, err := os.ReadFile(filepath.Join("..", "configs", "ccproxy.yaml"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	forEachRelay(t, func(t *testing.T, _ relayManifest, o objects) {
		var cfg map[string]any
		if err := yaml.UnmarshalStrict([]byte(o.configMap.Data["ccproxy.yaml"]), &cfg); err != nil {
			t.Fatalf("ccproxy.yaml in the ConfigMap: %v", err)
		}
		if len(cfg) == 0 {
			t.Fatal("ccproxy.yaml in the ConfigMap sets nothing")
		}
		if documented == nil {
			t.Log("configs/ccproxy.yaml not present; keys not cross-checked")
			return
		}
		for k := range cfg {
			// Documented keys may be commented out there; match the key either way.
			re := regexp.MustCompile(`(?m)^#?\s*` + regexp.QuoteMeta(k) + `:`)
			if !re.Match(documented) {
				t.Errorf("key %q is not in configs/ccproxy.yaml", k)
			}
		}
	})
}

// The commands in the manifests' headers and the READMEs address the
// objects the manifests create: Contrast's own
// `kubectl port-forward pod/port-forwarder-coordinator 1313` for the Pod,
// and the Deployment by its name for the variant. The Pod is no longer a
// Deployment, so `deploy/port-forwarder-coordinator` must be gone.
func TestManifestDocumentedCommands(t *testing.T) {
	read := func(name string) string {
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		// Continuation lines joined, so a command split with "\" matches.
		s := regexp.MustCompile(`\\\n[#\s]*`).ReplaceAllString(string(b), " ")
		return regexp.MustCompile(`[ \t]+`).ReplaceAllString(s, " ")
	}
	ns := `( -n "\$NAMESPACE")?`
	podForward := regexp.MustCompile(`kubectl port-forward` + ns + ` pod/` + appName + ` 1313\b`)
	podApply := regexp.MustCompile(`kubectl apply` + ns + ` -f deploy/` + regexp.QuoteMeta(manifestFile))
	podDelete := regexp.MustCompile(`kubectl delete` + ns + ` pod ` + appName)
	depForward := regexp.MustCompile(`kubectl port-forward` + ns + ` deploy/` + deploymentAppName + ` 1313\b`)
	depApply := regexp.MustCompile(`kubectl apply` + ns + ` -f deploy/` + regexp.QuoteMeta(deploymentFile))
	depPin := regexp.MustCompile(`MANIFEST=deploy/` + regexp.QuoteMeta(deploymentFile) + ` scripts/pin-image\.sh`)
	stale := regexp.MustCompile(`(deploy|deployment|deployments)/` + appName + `\b`)

	for _, tc := range []struct {
		file string
		want []*regexp.Regexp
	}{
		{manifestFile, []*regexp.Regexp{podForward, podApply, podDelete}},
		{deploymentFile, []*regexp.Regexp{depForward, depApply, depPin}},
		{"README.md", []*regexp.Regexp{podForward, podApply, podDelete, depForward, depApply, depPin}},
		{filepath.Join("..", "README.md"), []*regexp.Regexp{podForward, podApply}},
	} {
		text := read(tc.file)
		for _, re := range tc.want {
			if !re.MatchString(text) {
				t.Errorf("%s does not document %s", tc.file, re)
			}
		}
		if m := stale.FindString(text); m != "" {
			t.Errorf("%s still says %q: the port-forwarder is a Pod, address it as pod/%s", tc.file, m, appName)
		}
	}
}

// scripts/pin-image.sh rewrites exactly the image line, in either manifest.
func TestPinImageScript(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("bash not available")
	}
	script, err := filepath.Abs(filepath.Join("..", "scripts", "pin-image.sh"))
	if err != nil {
		t.Fatal(err)
	}
	orig := readManifest(t)
	newDigest := "sha256:" + strings.Repeat("ab", 32)
	image := func(t *testing.T, manifest []byte) string {
		t.Helper()
		return load(t, manifest).container(t).Image
	}

	run := func(t *testing.T, manifest []byte, args ...string) ([]byte, int, string) {
		t.Helper()
		f := filepath.Join(t.TempDir(), "m.yaml")
		if err := os.WriteFile(f, manifest, 0o644); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(bash, append([]string{script}, args...)...)
		cmd.Env = append(os.Environ(), "MANIFEST="+f)
		out, err := cmd.CombinedOutput()
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		got, rerr := os.ReadFile(f)
		if rerr != nil {
			t.Fatal(rerr)
		}
		return got, code, string(out)
	}

	for _, m := range relayManifests {
		t.Run("pins digest, keeps repository: "+m.file, func(t *testing.T) {
			orig := readFile(t, m)
			got, code, out := run(t, orig, newDigest)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, out)
			}
			img := image(t, got)
			if !strings.HasSuffix(img, "@"+newDigest) {
				t.Errorf("image %q, want digest %s", img, newDigest)
			}
			oldImg := image(t, orig)
			repo, _, _ := strings.Cut(oldImg, "@")
			if !strings.HasPrefix(img, repo+"@") {
				t.Errorf("repository changed: %q → %q", oldImg, img)
			}
			if d := lineDiff(orig, got); d != 1 {
				t.Errorf("%d lines changed, want 1", d)
			}
		})
	}
	t.Run("bare hex and new repository", func(t *testing.T) {
		got, code, out := run(t, orig, strings.Repeat("cd", 32), "registry.example:5000/team/ccproxy")
		if code != 0 {
			t.Fatalf("exit %d: %s", code, out)
		}
		want := "registry.example:5000/team/ccproxy@sha256:" + strings.Repeat("cd", 32)
		if img := image(t, got); img != want {
			t.Errorf("image %q, want %q", img, want)
		}
	})
	for _, tc := range []struct {
		name     string
		manifest []byte
		args     []string
		code     int
	}{
		{"bad digest", orig, []string{"sha256:XYZ"}, 2},
		{"short digest", orig, []string{"sha256:abcd"}, 2},
		{"repository with digest", orig, []string{newDigest, "x/ccproxy@sha256:00"}, 2},
		{"no arguments", orig, nil, 2},
		{"two image lines", append(slices.Clone(orig), []byte("\n        image: other/ccproxy@sha256:"+strings.Repeat("0", 64)+"\n")...), []string{newDigest}, 1},
		{"no image line", []byte("kind: ConfigMap\n"), []string{newDigest}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, code, out := run(t, tc.manifest, tc.args...)
			if code != tc.code {
				t.Errorf("exit %d, want %d: %s", code, tc.code, out)
			}
			if !bytes.Equal(got, tc.manifest) {
				t.Error("manifest changed although the script failed")
			}
		})
	}
}

// firstDifference shows the first line where got and want differ, with the
// lines before it for context.
func firstDifference(got, want []byte) string {
	g, w := strings.Split(string(got), "\n"), strings.Split(string(want), "\n")
	for i := 0; i < max(len(g), len(w)); i++ {
		var gl, wl string
		if i < len(g) {
			gl = g[i]
		}
		if i < len(w) {
			wl = w[i]
		}
		if gl != wl {
			ctx := strings.Join(g[max(0, i-3):min(i, len(g))], "\n")
			return fmt.Sprintf("at line %d, after\n%s\ngot:  %s\nwant: %s", i+1, ctx, gl, wl)
		}
	}
	return "no textual difference"
}

func lineDiff(a, b []byte) int {
	la, lb := strings.Split(string(a), "\n"), strings.Split(string(b), "\n")
	if len(la) != len(lb) {
		return -1
	}
	n := 0
	for i := range la {
		if la[i] != lb[i] {
			n++
		}
	}
	return n
}
