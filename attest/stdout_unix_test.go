//go:build unix

package attest_test

import (
	"context"
	"io"
	"os"
	"testing"

	"github.com/ccproxy-dev/ccproxy/attest"
	"github.com/ccproxy-dev/ccproxy/internal/failure"
	"golang.org/x/sys/unix"
)

// TestNothingOnStdout checks that verifying with the built-in Intel root
// does not let go-tdx-guest print "Using embedded Intel certificate ..."
// into ccproxy's standard output (which may be --output json). The library
// logs to the *os.File it saw at init, so the capture is at the descriptor.
func TestNothingOnStdout(t *testing.T) {
	raw, _ := tdxSample(t)
	attestation, _, _ := snpSample(t)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	saved, err := unix.Dup(1)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Dup2(int(w.Fd()), 1); err != nil {
		t.Fatal(err)
	}
	var results []attest.Result
	func() {
		defer func() {
			if err := unix.Dup2(saved, 1); err != nil {
				t.Fatal(err)
			}
			unix.Close(saved)
		}()
		for _, data := range [][]byte{raw, attestation} {
			results = append(results, attest.CheckFile(context.Background(), data, attest.Options{Offline: true, Now: sampleTime}))
		}
	}()
	w.Close()
	out, _ := io.ReadAll(r)
	for _, res := range results {
		if res.Mode != failure.OK {
			t.Fatalf("sample did not verify: %s %s", res.Mode, res.Detail)
		}
	}
	if len(out) != 0 {
		t.Errorf("checking wrote %q to standard output", out)
	}
}
