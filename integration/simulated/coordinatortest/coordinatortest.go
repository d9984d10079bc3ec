// Package coordinatortest starts simulated Coordinators for tests, as
// net/http/httptest starts servers: one place instead of a start helper
// copied into each test package.
//
//	c, addr := coordinatortest.Start(t, coordinator.Config{Fault: coordinator.FaultLBClose})
package coordinatortest

import (
	"context"
	"net"
	"testing"

	"github.com/ccproxy-dev/ccproxy/integration/simulated/coordinator"
)

// Start runs a simulated Coordinator made from cfg on a loopback port
// until the test ends, and returns it with its address. The test fails if
// Serve returns an error.
func Start(t testing.TB, cfg coordinator.Config) (*coordinator.Coordinator, string) {
	t.Helper()
	c, err := coordinator.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("simulated Coordinator: Serve: %v", err)
		}
	})
	return c, ln.Addr().String()
}
