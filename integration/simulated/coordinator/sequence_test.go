package coordinator_test

import (
	"crypto/tls"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/ccproxy-dev/ccproxy/integration/simulated/coordinator"
	"github.com/ccproxy-dev/ccproxy/internal/atls"
)

// TestFaultSequence: the next connections take the sequence's faults in
// order, then the current fault again; an empty sequence clears it.
func TestFaultSequence(t *testing.T) {
	c, addr := start(t, coordinator.Config{})
	c.SetFault(coordinator.FaultIssuerError)
	c.SetFaultSequence(coordinator.FaultLBClose, coordinator.FaultNone, coordinator.FaultLBReset)

	handshake := func() error {
		nonce, err := atls.NewNonce()
		if err != nil {
			t.Fatal(err)
		}
		cfg := atls.ClientConfig(nonce, atls.NonceALPN, "localhost", nil)
		d := tls.Dialer{Config: cfg}
		conn, err := d.DialContext(t.Context(), "tcp", addr)
		if err == nil {
			conn.Close()
		}
		return err
	}
	isClosed := func(err error) bool { return errors.Is(err, io.EOF) || err != nil && isReset(err) }

	if err := handshake(); !errors.Is(err, io.EOF) {
		t.Errorf("1st connection (lb_close): %v, want EOF", err)
	}
	if err := handshake(); err != nil {
		t.Errorf("2nd connection (none): %v, want a handshake", err)
	}
	if err := handshake(); !isClosed(err) {
		t.Errorf("3rd connection (lb_reset): %v, want a reset or EOF", err)
	}
	for i := range 2 {
		if err := handshake(); err == nil || !containsInternalError(err) {
			t.Errorf("connection %d after the sequence: %v, want the current fault's internal error", 4+i, err)
		}
	}
	c.SetFaultSequence(coordinator.FaultLBClose, coordinator.FaultLBClose)
	c.SetFaultSequence()
	c.SetFault(coordinator.FaultNone)
	done := make(chan error, 1)
	go func() { done <- handshake() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("after clearing the sequence: %v, want a handshake", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no handshake after clearing the sequence")
	}
}

// isReset reports a reset as the client's read or write saw it.
func isReset(err error) bool {
	return strings.Contains(err.Error(), "connection reset") || strings.Contains(err.Error(), "broken pipe")
}

func containsInternalError(err error) bool { return strings.Contains(err.Error(), "internal error") }
