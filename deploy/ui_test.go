package deploy

import (
	"net"
	"strconv"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// TestManifestLivePageOnLoopback: every ccproxy pod serves its live page,
// on the pod's loopback only (kubectl port-forward reaches it; no Service,
// no other pod does), and declares no container port for it.
func TestManifestLivePageOnLoopback(t *testing.T) {
	check := func(t *testing.T, c corev1.Container) {
		addr, ok := flagValue(c.Args, "--ui-listen")
		if !ok {
			t.Fatal("no --ui-listen argument: deploy/README.md tells how to open the live page")
		}
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			t.Fatalf("--ui-listen %q: %v", addr, err)
		}
		if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
			t.Errorf("--ui-listen %q is not on loopback: the page shows client addresses and handshake details without authentication", addr)
		}
		for _, p := range c.Ports {
			if port == strconv.Itoa(int(p.ContainerPort)) {
				t.Errorf("container port %s (%d) declares the loopback-only live page", p.Name, p.ContainerPort)
			}
		}
	}
	forEachRelay(t, func(t *testing.T, _ relayManifest, o objects) { check(t, o.container(t)) })
	t.Run(tunnelFile, func(t *testing.T) {
		tun := loadTunnel(t)
		check(t, podContainer(t, &tun.deploy.Spec.Template.Spec))
	})
}
