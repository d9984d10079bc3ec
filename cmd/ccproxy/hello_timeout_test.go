package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ccproxy-dev/ccproxy/proxy"
)

// TestClientHelloTimeoutSetting: --client-hello-timeout is set like every
// relay limit, by flag, CCPROXY_CLIENT_HELLO_TIMEOUT or the config key; its
// default is proxy.DefaultClientHelloTimeout, 0 disables it, and a bad value
// is a usage error naming all three places.
func TestClientHelloTimeoutSetting(t *testing.T) {
	yaml := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(yaml, []byte("upstream: coordinator:1313\nclient-hello-timeout: 7s\n"), 0o644)
	for _, tc := range []struct {
		name string
		env  string
		args []string
		want time.Duration
		err  string
	}{
		{name: "default", args: []string{"--upstream", "c:1313"}, want: proxy.DefaultClientHelloTimeout},
		{name: "flag", args: []string{"--upstream", "c:1313", "--client-hello-timeout", "3s"}, want: 3 * time.Second},
		{name: "env", env: "2s", args: []string{"--upstream", "c:1313"}, want: 2 * time.Second},
		{name: "config key", args: []string{"--config", yaml}, want: 7 * time.Second},
		{name: "zero disables", args: []string{"--upstream", "c:1313", "--client-hello-timeout", "0"}, want: -1},
		{name: "bad value", env: "soon", args: []string{"--upstream", "c:1313"},
			err: `--client-hello-timeout (config key "client-hello-timeout", env CCPROXY_CLIENT_HELLO_TIMEOUT)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.env != "" {
				t.Setenv("CCPROXY_CLIENT_HELLO_TIMEOUT", tc.env)
			}
			cmd := newRootCmd()
			if err := cmd.ParseFlags(tc.args); err != nil {
				t.Fatal(err)
			}
			s, err := loadSettings(cmd)
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := parseRelayConfig(s, func(string) string { return "" })
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) || exitCode(err) != 2 {
					t.Fatalf("err = %v, want a usage error naming %s", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.helloTimeout != tc.want {
				t.Errorf("helloTimeout = %v, want %v", cfg.helloTimeout, tc.want)
			}
		})
	}
	var help strings.Builder
	cmd := newRootCmd()
	cmd.SetOut(&help)
	cmd.SetArgs([]string{"--help"})
	cmd.Execute()
	if !strings.Contains(help.String(), "--client-hello-timeout") {
		t.Error("--help does not list --client-hello-timeout")
	}
}
