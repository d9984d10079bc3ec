package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spf13/pflag"
	"sigs.k8s.io/yaml"
)

// binary is the ccproxy binary built once for the tests that run it as a
// process (signals, exit codes).
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "ccproxy-bin")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "ccproxy")
	out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput()
	if err != nil {
		os.Stderr.Write(out)
		panic(err)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func run(t *testing.T, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	// The demo runs every scenario in about 25 s (longer under -race).
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Dir = t.TempDir() // no ./ccproxy.yaml there
	cmd.Env = append(os.Environ(), env...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return o.String(), e.String(), code
}

func TestBadConfigurationExits2NamingTheKey(t *testing.T) {
	dir := t.TempDir()
	badYAML := filepath.Join(dir, "bad.yaml")
	os.WriteFile(badYAML, []byte("upstream: coordinator:1313\nidle-timout: 5m\n"), 0o644)
	badValue := filepath.Join(dir, "badvalue.yaml")
	os.WriteFile(badValue, []byte("upstream: coordinator:1313\ndrain-timeout: soon\n"), 0o644)
	cases := []struct {
		name string
		env  []string
		args []string
		want string
	}{
		{"nothing to relay", nil, nil, "nothing to relay"},
		{"upstream without port", nil, []string{"--upstream", "coordinator"}, "--upstream"},
		{"bad duration flag", nil, []string{"--upstream", "c:1313", "--idle-timeout", "5x"}, "--idle-timeout"},
		{"bad env", []string{"CCPROXY_MAX_CONNECTIONS=many"}, []string{"--upstream", "c:1313"}, "max-connections"},
		{"bad forward", nil, []string{"--forward", "1313"}, "--forward"},
		{"duplicate listen", nil, []string{"--forward", ":1313=a:1", "--forward", ":1313=b:1"}, "used twice"},
		{"unknown config key", nil, []string{"--config", badYAML}, `"idle-timout"`},
		{"bad config value", nil, []string{"--config", badValue}, `drain-timeout`},
		{"missing config file", nil, []string{"--config", filepath.Join(dir, "nope.yaml")}, "--config"},
		{"bad policy hash", nil, []string{"--upstream", "c:1313", "--coordinator-policy-hash", "abcd"}, "--coordinator-policy-hash"},
		{"bad otlp endpoint", nil, []string{"--upstream", "c:1313", "--otlp-endpoint", "ftp://x"}, "--otlp-endpoint"},
		{"bad log format", nil, []string{"--upstream", "c:1313", "--log-format", "xml"}, "--log-format"},
		{"missing manifest", nil, []string{"--upstream", "c:1313", "--manifest", filepath.Join(dir, "none.json")}, "--manifest"},
		{"listen in use", nil, []string{"--upstream", "c:1313", "--listen", "256.0.0.1:1"}, "listen"},
		{"unknown flag", nil, []string{"--upstreams", "c:1313"}, "unknown flag"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, stderr, code := run(t, c.env, c.args...)
			if code != 2 {
				t.Errorf("exit code %d, want 2; stderr: %s", code, stderr)
			}
			if !strings.Contains(stderr, c.want) {
				t.Errorf("stderr %q does not name %q", stderr, c.want)
			}
		})
	}
}

func TestVersion(t *testing.T) {
	out, _, code := run(t, nil, "version")
	if code != 0 || !regexp.MustCompile(`(?m)^ccproxy .+\ncommit .+\ngo1\.\d+`).MatchString(out) {
		t.Fatalf("version: exit %d, output %q", code, out)
	}
}

// TestConfigFileDocumentsEveryKey keeps configs/ccproxy.yaml and the flags
// in step: every relay flag is documented there, and the file itself is a
// valid config (it loads without an unknown key).
func TestConfigFileDocumentsEveryKey(t *testing.T) {
	b, err := os.ReadFile("../../configs/ccproxy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	root := newRootCmd()
	root.Flags().AddFlagSet(root.PersistentFlags())
	root.Flags().VisitAll(func(f *pflag.Flag) {
		if f.Name == "help" || f.Name == "config" {
			return
		}
		if _, ok := doc[f.Name]; !ok {
			t.Errorf("flag --%s is not documented in configs/ccproxy.yaml", f.Name)
		}
	})
	for k := range doc {
		if root.Flags().Lookup(k) == nil {
			t.Errorf("configs/ccproxy.yaml documents %q, which is no flag", k)
		}
	}
	// The documented defaults plus an upstream are a working configuration.
	abs, _ := filepath.Abs("../../configs/ccproxy.yaml")
	_, stderr, code := run(t, nil, "--config", abs, "--upstream", "c:1313", "--listen", "256.0.0.1:1")
	if code != 2 || !strings.Contains(stderr, "listen 256.0.0.1:1") {
		t.Errorf("loading configs/ccproxy.yaml: exit %d, %s", code, stderr)
	}
}

func TestSocatEnvironmentBecomesRoutes(t *testing.T) {
	cases := []struct {
		env  map[string]string
		want []string
	}{
		{map[string]string{"FORWARD_HOST": "coordinator", "LISTEN_PORTS": "1313 1314 7777 8200"},
			[]string{":1313=coordinator:1313 inspect", ":1314=coordinator:1314 plain", ":7777=coordinator:7777 inspect", ":8200=coordinator:8200 plain"}},
		{map[string]string{"FORWARD_HOST": "coordinator", "LISTEN_PORT": "1313", "FORWARD_PORT": "31313"},
			[]string{":1313=coordinator:31313 inspect"}},
	}
	for _, c := range cases {
		cmd := newRootCmd()
		cmd.SetArgs(nil)
		cmd.ParseFlags(nil)
		s, err := loadSettings(cmd)
		if err != nil {
			t.Fatal(err)
		}
		routes, err := parseRoutes(s, func(k string) string { return c.env[k] }, map[string]bool{"1314": true, "8200": true})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, r := range routes {
			kind := "plain"
			if r.Inspect {
				kind = "inspect"
			}
			got = append(got, r.String()+" "+kind)
		}
		if strings.Join(got, ",") != strings.Join(c.want, ",") {
			t.Errorf("env %v: routes %v, want %v", c.env, got, c.want)
		}
	}
}

// TestSIGTERMDrainsInFlightConnection runs the binary, opens a connection
// whose answer is still pending, sends SIGTERM, and checks that the answer
// arrives whole and the process exits 0 afterwards.
func TestSIGTERMDrainsInFlightConnection(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	release := make(chan struct{})
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.ReadFull(c, make([]byte, 4))
		<-release
		c.Write(bytes.Repeat([]byte("z"), 1<<20))
		c.(*net.TCPConn).CloseWrite()
		io.Copy(io.Discard, c)
	}()
	port := freePort(t)
	cmd := exec.Command(binary, "--listen", "127.0.0.1:"+port, "--upstream", ln.Addr().String(), "--drain-timeout", "20s")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	var c net.Conn
	for i := 0; i < 100; i++ {
		if c, err = net.Dial("tcp", "127.0.0.1:"+port); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if c == nil {
		t.Fatalf("relay never listened: %v\n%s", err, stderr.String())
	}
	defer c.Close()
	c.Write([]byte("ping"))
	time.Sleep(100 * time.Millisecond)
	cmd.Process.Signal(syscall.SIGTERM)
	time.Sleep(200 * time.Millisecond)
	close(release)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(c)
	if err != nil || len(got) != 1<<20 {
		t.Fatalf("in-flight answer: %d bytes, %v; want 1 MiB and EOF", len(got), err)
	}
	c.Close()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit: %v\n%s", err, stderr.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("process did not exit after the drain\n%s", stderr.String())
	}
	if !strings.Contains(stderr.String(), "draining") {
		t.Errorf("no drain in the log:\n%s", stderr.String())
	}
}

func freePort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}
