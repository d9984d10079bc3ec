// Command ccproxy relays Contrast's attested-TLS port and names what went
// wrong with every connection. This package is wiring only: cobra commands,
// viper configuration and signal handling; the work lives in the packages it
// calls.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
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
