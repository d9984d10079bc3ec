// Command ccproxy relays Contrast's attested-TLS port and names what went
// wrong with every connection. This package is wiring only: cobra commands,
// viper configuration and signal handling; the work lives in the packages it
// calls.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/ccproxy-dev/ccproxy/internal/footprint"
)

// memLimit and memLimitSource are the Go runtime's soft memory limit set
// at startup (0: none) and where it came from, for relay mode's log.
var (
	memLimit       int64
	memLimitSource string
)

func main() {
	memLimit, memLimitSource = footprint.SetMemoryLimit(os.Getenv, os.DirFS("/"))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRootCmd().ExecuteContext(ctx)
	stop()
	os.Exit(exitCode(err))
}

// exitError carries a contract exit code (0 ok, 1 the check found a failure,
// 2 usage or configuration error) out of a command.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}
func (e *exitError) Unwrap() error { return e.err }

// usageErrorf is a usage or configuration error: exit 2, nothing started.
func usageErrorf(format string, a ...any) error {
	return &exitError{code: 2, err: fmt.Errorf(format, a...)}
}

// checkFailed means the command ran and found a failure: exit 1. The command
// has already printed the failure mode; err may be nil.
func checkFailed(err error) error { return &exitError{code: 1, err: err} }

func exitCode(err error) int {
	if err == nil {
		return 0
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil {
			fmt.Fprintln(os.Stderr, "ccproxy:", ee.err)
		}
		return ee.code
	}
	// cobra's own errors (unknown flag, bad argument count) are usage errors.
	fmt.Fprintln(os.Stderr, "ccproxy:", err)
	return 2
}

// settleFootprint wraps a Proxy's Ready callback: once every listener is
// serving, it logs the memory limit in force and hands back the executable
// pages only startup touched (see footprint.ReleaseStartupPages), then
// calls next, if set.
func settleFootprint(log *slog.Logger, next func([]net.Addr)) func([]net.Addr) {
	return func(addrs []net.Addr) {
		attrs := []any{"limit_source", memLimitSource}
		if memLimit > 0 {
			attrs = append(attrs, "go_memory_limit_mib", memLimit>>20)
		}
		log.Info("memory", attrs...)
		footprint.ReleaseStartupPages()
		if next != nil {
			next(addrs)
		}
	}
}
