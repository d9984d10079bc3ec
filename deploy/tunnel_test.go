package deploy

import (
	"bytes"
	"errors"
	"net"
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
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/labels"
)

const (
	tunnelFile       = "tunnel.yaml"
	tunnelName       = "ccproxy-tunnel"
	tunnelPort       = 4433
	tunnelKeysSecret = "ccproxy-tunnel-keys"
	tunnelPeersMap   = "ccproxy-tunnel-peers"
	tunnelPeersKey   = "peer-fingerprints"
	// proxy.DefaultDrainTimeout, and the span flush bound after it
	// (cmd/ccproxy's setupTracing); not imported, to keep this package's
	// tests free of the binary's dependencies.
	defaultDrainTimeout = 30 * time.Second
	spanFlushTimeout    = 10 * time.Second
)

type tunnelObjects struct {
	deploy  *appsv1.Deployment
	service *corev1.Service
}

// loadTunnel decodes tunnel.yaml strictly: exactly one Deployment and one
// Service. Any other kind fails, a Secret in particular (decodeStrict does
// not know it): key material must never be in the repository.
func loadTunnel(t *testing.T) tunnelObjects {
	t.Helper()
	data, err := os.ReadFile(tunnelFile)
	if err != nil {
		t.Fatal(err)
	}
	docs, err := splitDocuments(data)
	if err != nil {
		t.Fatal(err)
	}
	var o tunnelObjects
	for i, doc := range docs {
		obj, err := decodeStrict(doc)
		if err != nil {
			t.Fatalf("%s document %d: %v", tunnelFile, i+1, err)
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
		default:
			t.Fatalf("%s document %d: unexpected %T; the operator creates the Secret and ConfigMap", tunnelFile, i+1, obj)
		}
	}
	if o.deploy == nil || o.service == nil {
		t.Fatalf("want a Deployment and a Service; got %+v", o)
	}
	return o
}

func TestTunnelNamesAndSelectors(t *testing.T) {
	o := loadTunnel(t)
	for _, m := range []struct{ kind, name, ns string }{
		{"Deployment", o.deploy.Name, o.deploy.Namespace},
		{"Service", o.service.Name, o.service.Namespace},
	} {
		if m.name != tunnelName {
			t.Errorf("%s %q, want %q", m.kind, m.name, tunnelName)
		}
		if m.ns != "" {
			t.Errorf("%s: namespace %q is set; the manifest must apply into the Coordinator's namespace", m.kind, m.ns)
		}
	}
	pod := labels.Set(o.deploy.Spec.Template.Labels)
	if pod["app.kubernetes.io/name"] != tunnelName {
		t.Errorf("pod label app.kubernetes.io/name %q, want %q", pod["app.kubernetes.io/name"], tunnelName)
	}
	if !labels.SelectorFromSet(o.deploy.Spec.Selector.MatchLabels).Matches(pod) {
		t.Error("Deployment selector does not match its pod template")
	}
	if len(o.service.Spec.Selector) == 0 || !labels.SelectorFromSet(o.service.Spec.Selector).Matches(pod) {
		t.Error("Service selector does not match the tunnel pods")
	}
	if o.deploy.Spec.Replicas == nil || *o.deploy.Spec.Replicas != 1 {
		t.Errorf("replicas %v, want 1: a QUIC connection lives in one process", o.deploy.Spec.Replicas)
	}

	// Applied next to the port-forwarders: TestManifestsDoNotSelectEachOther
	// checks that no Service or Deployment picks up another manifest's pods.
}

// listenPort returns the port of a host:port or :port flag value.
func listenPort(t *testing.T, args []string, flag string) int32 {
	t.Helper()
	v, ok := flagValue(args, flag)
	if !ok {
		t.Fatalf("no %s argument", flag)
	}
	_, p, err := net.SplitHostPort(v)
	if err != nil {
		t.Fatalf("%s=%s: %v", flag, v, err)
	}
	n, err := strconv.ParseUint(p, 10, 16)
	if err != nil {
		t.Fatalf("%s=%s: %v", flag, v, err)
	}
	return int32(n)
}

func flagValues(args []string, flag string) []string {
	var out []string
	for i, a := range args {
		if v, ok := strings.CutPrefix(a, flag+"="); ok {
			out = append(out, v)
		} else if a == flag && i+1 < len(args) {
			out = append(out, args[i+1])
		}
	}
	return out
}

var varRef = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

func TestTunnelArgs(t *testing.T) {
	o := loadTunnel(t)
	c := container(t, o.deploy)
	// The image's entrypoint is /ccproxy; without "tunnel serve" it would
	// start the relay.
	if len(c.Command) != 0 {
		t.Errorf("command %q overrides the image's entrypoint", c.Command)
	}
	if len(c.Args) < 2 || c.Args[0] != "tunnel" || c.Args[1] != "serve" {
		t.Fatalf("args %q, want them to start with tunnel serve", c.Args)
	}
	if p := listenPort(t, c.Args, "--quic-listen"); p != tunnelPort {
		t.Errorf("--quic-listen on %d, want %d", p, tunnelPort)
	}

	// The kubelet leaves $(VAR) unexpanded when VAR is not in the
	// container's env: ccproxy would then be given the literal text.
	defined := map[string]bool{}
	for _, e := range c.Env {
		defined[e.Name] = true
	}
	for _, a := range c.Args {
		for _, m := range varRef.FindAllStringSubmatch(a, -1) {
			if !defined[m[1]] {
				t.Errorf("argument %q refers to $(%s), which is not in the container's env", a, m[1])
			}
		}
	}

	// The pin comes from the operator's ConfigMap, and the pod must not
	// start without it.
	pins := flagValues(c.Args, "--peer-fingerprint")
	if len(pins) != 1 {
		t.Fatalf("--peer-fingerprint given %d times, want once (from the ConfigMap): %q", len(pins), pins)
	}
	m := varRef.FindStringSubmatch(pins[0])
	if m == nil || m[0] != pins[0] {
		t.Fatalf("--peer-fingerprint=%s, want exactly one $(VAR) reference: a pin belongs to the operator, not to the manifest", pins[0])
	}
	var src *corev1.EnvVarSource
	for _, e := range c.Env {
		if e.Name == m[1] {
			src = e.ValueFrom
		}
	}
	if src == nil || src.ConfigMapKeyRef == nil {
		t.Fatalf("%s does not come from a ConfigMap", m[1])
	}
	ref := src.ConfigMapKeyRef
	if ref.Name != tunnelPeersMap || ref.Key != tunnelPeersKey {
		t.Errorf("%s from ConfigMap %s key %s, want %s key %s", m[1], ref.Name, ref.Key, tunnelPeersMap, tunnelPeersKey)
	}
	if ref.Optional != nil && *ref.Optional {
		t.Errorf("the %s ConfigMap is optional: the pod would start with nobody pinned", ref.Name)
	}

	// Routes: the default one is the user API, every upstream is a port of
	// the Coordinator that the port-forwarder relays too, and no name or
	// upstream repeats.
	up, ok := flagValue(c.Args, "--upstream")
	if !ok || up != "coordinator:1313" {
		t.Errorf("--upstream %q, want coordinator:1313 (the default route: the user API)", up)
	}
	routes := map[string]string{"default": up}
	for _, r := range flagValues(c.Args, "--route") {
		name, upstream, ok := strings.Cut(r, "=")
		if !ok || name == "" {
			t.Errorf("--route=%s is not NAME=HOST:PORT", r)
			continue
		}
		if _, dup := routes[name]; dup {
			t.Errorf("route %q twice", name)
		}
		routes[name] = upstream
	}
	if routes["mesh"] != "coordinator:7777" {
		t.Errorf("route mesh → %q, want coordinator:7777", routes["mesh"])
	}
	seen := map[string]string{}
	for name, upstream := range routes {
		host, p, err := net.SplitHostPort(upstream)
		if err != nil {
			t.Errorf("route %s: upstream %q: %v", name, upstream, err)
			continue
		}
		n, err := strconv.ParseInt(p, 10, 32)
		if host != "coordinator" || err != nil || !slices.Contains(coordinatorPorts, int32(n)) {
			t.Errorf("route %s → %s, want coordinator on one of %v", name, upstream, coordinatorPorts)
		}
		if other, dup := seen[upstream]; dup {
			t.Errorf("routes %s and %s both relay to %s", name, other, upstream)
		}
		seen[upstream] = name
	}
}

func TestTunnelPorts(t *testing.T) {
	o := loadTunnel(t)
	c := container(t, o.deploy)
	quic := listenPort(t, c.Args, "--quic-listen")
	admin := listenPort(t, c.Args, "--admin-listen")

	proto := map[int32]corev1.Protocol{}
	for _, p := range c.Ports {
		pr := p.Protocol
		if pr == "" {
			pr = corev1.ProtocolTCP
		}
		proto[p.ContainerPort] = pr
	}
	if proto[quic] != corev1.ProtocolUDP {
		t.Errorf("container port %d protocol %q, want UDP (QUIC)", quic, proto[quic])
	}
	if proto[admin] != corev1.ProtocolTCP {
		t.Errorf("container port %d protocol %q, want TCP (the admin endpoint)", admin, proto[admin])
	}

	s := o.service.Spec
	if s.Type != corev1.ServiceTypeLoadBalancer && s.Type != corev1.ServiceTypeNodePort {
		t.Errorf("Service type %q: the laptop is outside the cluster, want LoadBalancer or NodePort", s.Type)
	}
	// Only the tunnel leaves the cluster: /metrics and /readyz must not
	// be reachable through the load balancer.
	if len(s.Ports) != 1 {
		t.Fatalf("Service has %d ports, want only the tunnel's", len(s.Ports))
	}
	sp := s.Ports[0]
	if sp.Protocol != corev1.ProtocolUDP || sp.Port != tunnelPort {
		t.Errorf("Service port %s/%d, want UDP/%d", sp.Protocol, sp.Port, tunnelPort)
	}
	got, ok := portByName(c, sp.TargetPort.StrVal, sp.TargetPort.IntVal)
	if !ok || got != quic {
		t.Errorf("Service port targets %s (container port %d), want the --quic-listen port %d", sp.TargetPort.String(), got, quic)
	}
	if proto[got] != sp.Protocol {
		t.Errorf("Service port protocol %s, container port %d is %s", sp.Protocol, got, proto[got])
	}
}

func TestTunnelKeysAndVolumes(t *testing.T) {
	o := loadTunnel(t)
	spec := o.deploy.Spec.Template.Spec
	c := container(t, o.deploy)

	vols := map[string]corev1.Volume{}
	for _, v := range spec.Volumes {
		vols[v.Name] = v
	}
	type mounted struct {
		vol corev1.Volume
		m   corev1.VolumeMount
	}
	byDir := map[string]mounted{}
	for _, m := range c.VolumeMounts {
		v, ok := vols[m.Name]
		if !ok {
			t.Fatalf("mount %s refers to missing volume %q", m.MountPath, m.Name)
		}
		byDir[m.MountPath] = mounted{v, m}
	}

	var sec *corev1.SecretVolumeSource
	// --cert and --key: the two keys of a kubernetes.io/tls Secret, which
	// `kubectl create secret tls` writes, on a read-only mount.
	for flag, key := range map[string]string{"--cert": corev1.TLSCertKey, "--key": corev1.TLSPrivateKeyKey} {
		file, ok := flagValue(c.Args, flag)
		if !ok {
			t.Errorf("no %s argument", flag)
			continue
		}
		mv, ok := byDir[path.Dir(file)]
		if !ok || mv.vol.Secret == nil {
			t.Errorf("%s=%s is not on a Secret mount", flag, file)
			continue
		}
		sec = mv.vol.Secret
		if sec.SecretName != tunnelKeysSecret {
			t.Errorf("%s from Secret %q, want %q", flag, sec.SecretName, tunnelKeysSecret)
		}
		if !mv.m.ReadOnly {
			t.Errorf("key mount %s is not readOnly", mv.m.MountPath)
		}
		if sec.Optional != nil && *sec.Optional {
			t.Error("the keys Secret is optional: the pod would start and fail on the missing files")
		}
		// With items, only the listed keys appear, under their paths.
		name := key
		if len(sec.Items) > 0 {
			name = ""
			for _, it := range sec.Items {
				if it.Key == key {
					name = it.Path
				}
			}
		}
		if path.Base(file) != name {
			t.Errorf("%s=%s, but the Secret's %s key is mounted as %q", flag, file, key, name)
		}
	}
	// The kubelet makes the files root-owned with the fsGroup as group, so
	// ccproxy (uid 65532) reads them through the group bit; the world must
	// not read them.
	if sec == nil {
		t.Fatal("no keys Secret volume")
	}
	modes := map[string]*int32{"defaultMode": sec.DefaultMode}
	if sec.DefaultMode == nil {
		t.Error("keys Secret has no defaultMode (the default 0644 makes the key world-readable)")
	}
	for _, it := range sec.Items {
		if it.Mode != nil {
			modes["mode of "+it.Key] = it.Mode
		}
	}
	for what, mode := range modes {
		if mode == nil {
			continue
		}
		if m := *mode; m&0o007 != 0 || m&0o222 != 0 || m&0o040 == 0 {
			t.Errorf("keys Secret %s %#o, want group-readable, no write and no world bits (e.g. 0440)", what, m)
		}
	}
	if psc := spec.SecurityContext; psc == nil || psc.FSGroup == nil || psc.RunAsGroup == nil || *psc.FSGroup != *psc.RunAsGroup {
		t.Error("pod fsGroup must equal runAsGroup: the kubelet gives the Secret files to the fsGroup, and the key is readable by owner and group only")
	}

	trace, ok := flagValue(c.Args, "--trace-file")
	if !ok {
		t.Fatal("no --trace-file argument")
	}
	if mv, ok := byDir[path.Dir(trace)]; !ok || mv.vol.EmptyDir == nil {
		t.Errorf("--trace-file %s is not on an emptyDir (the root filesystem is read-only)", trace)
	} else if mv.vol.EmptyDir.SizeLimit == nil {
		t.Error("the traces emptyDir has no sizeLimit")
	}
}

func TestTunnelProbes(t *testing.T) {
	o := loadTunnel(t)
	c := container(t, o.deploy)
	admin := listenPort(t, c.Args, "--admin-listen")
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
		if port, ok := portByName(c, g.Port.StrVal, g.Port.IntVal); !ok || port != admin {
			t.Errorf("%s probe on %s, want the --admin-listen port %d", tc.name, g.Port.String(), admin)
		}
		// The admin handler bounds /readyz at 2 s.
		if tc.probe.TimeoutSeconds != 0 && tc.probe.TimeoutSeconds <= 2 {
			t.Errorf("%s probe timeoutSeconds %d, want > 2", tc.name, tc.probe.TimeoutSeconds)
		}
	}
}

func TestTunnelResources(t *testing.T) {
	o := loadTunnel(t)
	c := container(t, o.deploy)
	want := resource.MustParse("50Mi")
	req, lim := c.Resources.Requests[corev1.ResourceMemory], c.Resources.Limits[corev1.ResourceMemory]
	if req.Cmp(want) != 0 || lim.Cmp(want) != 0 {
		t.Errorf("memory request %s limit %s, want both 50Mi", req.String(), lim.String())
	}
	if _, ok := c.Resources.Limits[corev1.ResourceCPU]; ok {
		t.Error("CPU limit set: throttling would show up as handshake latency")
	}
	cpu, ok := c.Resources.Requests[corev1.ResourceCPU]
	if !ok || cpu.IsZero() || cpu.Cmp(resource.MustParse("100m")) > 0 {
		t.Errorf("cpu request %s, want a small non-zero request (at most 100m)", cpu.String())
	}
	v, ok := envValue(c, "GOMEMLIMIT")
	if !ok {
		t.Fatal("GOMEMLIMIT not set")
	}
	q, err := resource.ParseQuantity(strings.TrimSuffix(v, "B"))
	if err != nil || q.Cmp(lim) >= 0 {
		t.Errorf("GOMEMLIMIT %q, want below the memory limit %s", v, lim.String())
	}
}

// The kubelet must not kill ccproxy while it drains and flushes spans.
func TestTunnelTerminationGrace(t *testing.T) {
	o := loadTunnel(t)
	c := container(t, o.deploy)
	drain := defaultDrainTimeout
	if v, ok := flagValue(c.Args, "--drain-timeout"); ok {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("--drain-timeout=%s: %v", v, err)
		}
		drain = d
	}
	grace := 30 * time.Second // the Kubernetes default
	if g := o.deploy.Spec.Template.Spec.TerminationGracePeriodSeconds; g != nil {
		grace = time.Duration(*g) * time.Second
	}
	if grace < drain+spanFlushTimeout {
		t.Errorf("terminationGracePeriodSeconds %s, want at least drain %s + span flush %s", grace, drain, spanFlushTimeout)
	}
}

func TestTunnelSecurity(t *testing.T) {
	o := loadTunnel(t)
	spec := o.deploy.Spec.Template.Spec
	c := container(t, o.deploy)

	if spec.RuntimeClassName != nil {
		t.Errorf("runtimeClassName %q set: the tunnel end is an ordinary pod", *spec.RuntimeClassName)
	}
	if spec.HostNetwork || spec.HostPID || spec.HostIPC {
		t.Error("host namespaces in use")
	}
	if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
		t.Error("automountServiceAccountToken should be false: ccproxy never calls the API server")
	}
	if spec.EnableServiceLinks == nil || *spec.EnableServiceLinks {
		t.Error("enableServiceLinks should be false: the ccproxy-tunnel Service would inject CCPROXY_TUNNEL_* variables")
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
	for _, ch := range []struct {
		what string
		ok   bool
	}{
		{"pod runAsNonRoot: true", psc.RunAsNonRoot != nil && *psc.RunAsNonRoot},
		{"allowPrivilegeEscalation: false", sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation},
		{"readOnlyRootFilesystem: true", sc.ReadOnlyRootFilesystem != nil && *sc.ReadOnlyRootFilesystem},
		{"not privileged", sc.Privileged == nil || !*sc.Privileged},
		{"capabilities drop ALL", sc.Capabilities != nil && slices.Contains(sc.Capabilities.Drop, "ALL")},
		{"no added capabilities", sc.Capabilities == nil || len(sc.Capabilities.Add) == 0},
		{"seccomp RuntimeDefault", seccompDefault(sc.SeccompProfile, psc.SeccompProfile)},
	} {
		if !ch.ok {
			t.Errorf("security: want %s", ch.what)
		}
	}
}

// All manifests run the same build: neither the tunnel nor the Deployment
// variant may lag behind when the port-forwarder Pod is re-pinned.
func TestTunnelImagePinnedLikeSocat(t *testing.T) {
	img := container(t, loadTunnel(t).deploy).Image
	if !digestRef.MatchString(img) {
		t.Errorf("image %q is not pinned by digest", img)
	}
	for _, m := range relayManifests {
		relay := load(t, readFile(t, m)).container(t).Image
		if img != relay {
			t.Errorf("%s's image %q differs from %s's %q: run scripts/pin-image.sh for every file", tunnelFile, img, m.file, relay)
		}
	}
}

// The pinning command the README gives for tunnel.yaml works: the script
// finds exactly one image line in it and rewrites only that.
func TestTunnelPinImageScript(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("bash not available")
	}
	script, err := filepath.Abs(filepath.Join("..", "scripts", "pin-image.sh"))
	if err != nil {
		t.Fatal(err)
	}
	orig, err := os.ReadFile(tunnelFile)
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), tunnelFile)
	if err := os.WriteFile(f, orig, 0o644); err != nil {
		t.Fatal(err)
	}
	digest := "sha256:" + strings.Repeat("ef", 32)
	cmd := exec.Command(bash, script, digest, "registry.example/team/ccproxy")
	cmd.Env = append(os.Environ(), "MANIFEST="+f)
	if out, err := cmd.CombinedOutput(); err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Fatal(err)
		}
		t.Fatalf("pin-image.sh on %s: exit %d: %s", tunnelFile, ee.ExitCode(), out)
	}
	got, err := os.ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	if d := lineDiff(orig, got); d != 1 {
		t.Errorf("%d lines changed, want 1", d)
	}
	want := "image: registry.example/team/ccproxy@" + digest
	if !bytes.Contains(got, []byte(want)) {
		t.Errorf("pinned file lacks %q", want)
	}
}

// The kubectl commands in the manifest's header and the README create the
// objects, keys and Secret type the Deployment reads.
func TestTunnelDocumentedCommands(t *testing.T) {
	manifest, err := os.ReadFile(tunnelFile)
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	// Continuation lines joined, so a command split with "\" matches.
	join := func(b []byte) string {
		s := regexp.MustCompile(`\\\n[#\s]*`).ReplaceAllString(string(b), " ")
		return regexp.MustCompile(`[ \t]+`).ReplaceAllString(s, " ")
	}
	want := []*regexp.Regexp{
		regexp.MustCompile(`ccproxy tunnel keygen --out (\S+)`),
		regexp.MustCompile(`kubectl create secret tls ` + tunnelKeysSecret + `( -n "\$NAMESPACE")? --cert=\S+/tunnel\.crt --key=\S+/tunnel\.key`),
		regexp.MustCompile(`kubectl create configmap ` + tunnelPeersMap + `( -n "\$NAMESPACE")? --from-literal=` + tunnelPeersKey + `=`),
		regexp.MustCompile(`kubectl apply( -n "\$NAMESPACE")? -f deploy/` + regexp.QuoteMeta(tunnelFile)),
	}
	for name, text := range map[string]string{tunnelFile: join(manifest), "README.md": join(readme)} {
		for _, re := range want {
			if !re.MatchString(text) {
				t.Errorf("%s does not document %s", name, re)
			}
		}
	}
	if !strings.Contains(join(readme), "MANIFEST=deploy/"+tunnelFile+" scripts/pin-image.sh") {
		t.Error("README.md does not say how to pin tunnel.yaml's image")
	}
}
