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

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

const (
	manifestFile = "socat-replacement.yaml"
	appName      = "port-forwarder-coordinator"
	nonrootUID   = 65532
)

// The ports Contrast's port-forwarder relays for the Coordinator.
var coordinatorPorts = []int32{1313, 1314, 7777, 8200}

var digestRef = regexp.MustCompile(`@sha256:[0-9a-f]{64}$`)

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
// dropped by the API server.
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

type objects struct {
	deploy    *appsv1.Deployment
	service   *corev1.Service
	configMap *corev1.ConfigMap
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
		case *appsv1.Deployment:
			if o.deploy != nil {
				t.Fatal("more than one Deployment")
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
	if o.deploy == nil || o.service == nil || o.configMap == nil {
		t.Fatalf("want a Deployment, a Service and a ConfigMap; got %+v", o)
	}
	return o
}

func readManifest(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile(manifestFile)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, SocatReplacement) {
		t.Fatal("embedded SocatReplacement differs from the file")
	}
	return b
}

func TestDecodeStrictRejects(t *testing.T) {
	tests := []struct {
		name, doc, wantErr string
	}{
		{"unknown field", "apiVersion: apps/v1\nkind: Deployment\nspec:\n  replicaz: 1\n", "unknown field"},
		{"unknown nested field", "apiVersion: v1\nkind: Service\nspec:\n  ports:\n  - port: 1\n    targetPorts: 2\n", "unknown field"},
		{"duplicate key", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n  name: b\n", "already set"},
		{"unexpected kind", "apiVersion: v1\nkind: Pod\n", "unexpected kind"},
		{"wrong apiVersion", "apiVersion: extensions/v1beta1\nkind: Deployment\n", "apiVersion"},
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

func container(t *testing.T, d *appsv1.Deployment) corev1.Container {
	t.Helper()
	cs := d.Spec.Template.Spec.Containers
	if len(cs) != 1 {
		t.Fatalf("%d containers, want 1", len(cs))
	}
	return cs[0]
}

func TestManifestNamesAndLabels(t *testing.T) {
	o := load(t, readManifest(t))
	for _, m := range []metav1.ObjectMeta{o.deploy.ObjectMeta, o.service.ObjectMeta, o.configMap.ObjectMeta} {
		if got := m.Labels["app.kubernetes.io/name"]; got != appName {
			t.Errorf("%s: label app.kubernetes.io/name %q, want %q", m.Name, got, appName)
		}
		if m.Namespace != "" {
			t.Errorf("%s: namespace %q is set; the manifest must apply into the Coordinator's namespace", m.Name, m.Namespace)
		}
	}
	if o.deploy.Name != appName || o.service.Name != appName {
		t.Errorf("Deployment %q, Service %q, want both %q", o.deploy.Name, o.service.Name, appName)
	}
	sel := o.deploy.Spec.Selector.MatchLabels
	pod := o.deploy.Spec.Template.Labels
	for k, v := range sel {
		if pod[k] != v {
			t.Errorf("Deployment selector %s=%s does not match the pod template", k, v)
		}
	}
	for k, v := range o.service.Spec.Selector {
		if pod[k] != v {
			t.Errorf("Service selector %s=%s does not match the pod template", k, v)
		}
	}
	if c := container(t, o.deploy); c.Name != "port-forwarder" {
		t.Errorf("container %q, want port-forwarder (the socat pod's name)", c.Name)
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
	o := load(t, readManifest(t))
	c := container(t, o.deploy)

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
	if !slices.Equal(listen, coordinatorPorts) {
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
}

func TestManifestProbes(t *testing.T) {
	o := load(t, readManifest(t))
	c := container(t, o.deploy)
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
}

func TestManifestResources(t *testing.T) {
	o := load(t, readManifest(t))
	c := container(t, o.deploy)
	want := resource.MustParse("50Mi")
	req, lim := c.Resources.Requests[corev1.ResourceMemory], c.Resources.Limits[corev1.ResourceMemory]
	if req.Cmp(want) != 0 || lim.Cmp(want) != 0 {
		t.Errorf("memory request %s limit %s, want both 50Mi", req.String(), lim.String())
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
}

func TestManifestSecurity(t *testing.T) {
	o := load(t, readManifest(t))
	spec := o.deploy.Spec.Template.Spec
	c := container(t, o.deploy)

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
	o := load(t, readManifest(t))
	spec := o.deploy.Spec.Template.Spec
	c := container(t, o.deploy)

	vols := make(map[string]corev1.Volume)
	for _, v := range spec.Volumes {
		vols[v.Name] = v
	}
	mounts := make(map[string]corev1.Volume) // mount path → volume
	var paths []string
	for _, m := range c.VolumeMounts {
		v, ok := vols[m.Name]
		if !ok {
			t.Errorf("mount %s refers to missing volume %q", m.MountPath, m.Name)
			continue
		}
		mounts[m.MountPath] = v
		paths = append(paths, m.MountPath)
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
	if manifestVol.ConfigMap.Optional == nil || !*manifestVol.ConfigMap.Optional {
		t.Errorf("manifest ConfigMap volume %s must be optional: the relay starts before a manifest exists", manifestVol.Name)
	}
}

// The embedded ccproxy.yaml is strict YAML, and its keys exist in the
// documented config (configs/ccproxy.yaml) once that file is there.
func TestManifestConfigFile(t *testing.T) {
	o := load(t, readManifest(t))
	var cfg map[string]any
	if err := yaml.UnmarshalStrict([]byte(o.configMap.Data["ccproxy.yaml"]), &cfg); err != nil {
		t.Fatalf("ccproxy.yaml in the ConfigMap: %v", err)
	}
	if len(cfg) == 0 {
		t.Fatal("ccproxy.yaml in the ConfigMap sets nothing")
	}
	documented, err := os.ReadFile(filepath.Join("..", "configs", "ccproxy.yaml"))
	if errors.Is(err, os.ErrNotExist) {
		t.Log("configs/ccproxy.yaml not present; keys not cross-checked")
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	for k := range cfg {
		// Documented keys may be commented out there; match the key either way.
		re := regexp.MustCompile(`(?m)^#?\s*` + regexp.QuoteMeta(k) + `:`)
		if !re.Match(documented) {
			t.Errorf("key %q is not in configs/ccproxy.yaml", k)
		}
	}
}

// scripts/pin-image.sh rewrites exactly the image line.
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

	t.Run("pins digest, keeps repository", func(t *testing.T) {
		got, code, out := run(t, orig, newDigest)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, out)
		}
		img := container(t, load(t, got).deploy).Image
		if !strings.HasSuffix(img, "@"+newDigest) {
			t.Errorf("image %q, want digest %s", img, newDigest)
		}
		oldImg := container(t, load(t, orig).deploy).Image
		repo, _, _ := strings.Cut(oldImg, "@")
		if !strings.HasPrefix(img, repo+"@") {
			t.Errorf("repository changed: %q → %q", oldImg, img)
		}
		if d := lineDiff(orig, got); d != 1 {
			t.Errorf("%d lines changed, want 1", d)
		}
	})
	t.Run("bare hex and new repository", func(t *testing.T) {
		got, code, out := run(t, orig, strings.Repeat("cd", 32), "registry.example:5000/team/ccproxy")
		if code != 0 {
			t.Fatalf("exit %d: %s", code, out)
		}
		want := "registry.example:5000/team/ccproxy@sha256:" + strings.Repeat("cd", 32)
		if img := container(t, load(t, got).deploy).Image; img != want {
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
