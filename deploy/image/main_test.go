package main

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

const testVersion = "v9.8.7-imagetest"

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// ccproxyBinary builds ./cmd/ccproxy the way scripts/image.sh does, once per
// test run. CCPROXY_IMAGE_TEST_BINARY names an already built static binary
// instead (e.g. the one scripts/image.sh just put into the image), so a
// release pipeline tests the artifact it ships without compiling twice.
func ccproxyBinary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("CCPROXY_IMAGE_TEST_BINARY"); p != "" {
		return p
	}
	if testing.Short() {
		t.Skip("builds the ccproxy binary; skipped with -short")
	}
	binOnce.Do(func() {
		gobin, err := exec.LookPath("go")
		if err != nil {
			binErr = err
			return
		}
		dir, err := os.MkdirTemp("", "ccproxy-image-test")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "ccproxy")
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, gobin, "build", "-trimpath",
			"-ldflags", "-s -w -X main.version="+testVersion+" -X main.commit=0123abcd",
			"-o", binPath, "github.com/ccproxy-dev/ccproxy/cmd/ccproxy")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
		if out, err := cmd.CombinedOutput(); err != nil {
			binErr = errors.New("go build ./cmd/ccproxy: " + err.Error() + "\n" + string(out))
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

func testSpec(bin string) spec {
	return spec{
		Binary: bin, Arch: runtime.GOARCH, Version: testVersion, Revision: "0123abcd",
		Created: time.Unix(1700000000, 0).UTC(), Ports: defaultPorts,
	}
}

// tarEntries reads a layer's uncompressed tar into name → (header, body).
func tarEntries(t *testing.T, l v1.Layer) map[string]struct {
	hdr  *tar.Header
	body []byte
} {
	t.Helper()
	rc, err := l.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	out := make(map[string]struct {
		hdr  *tar.Header
		body []byte
	})
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("reading layer: %v", err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		out[h.Name] = struct {
			hdr  *tar.Header
			body []byte
		}{h, b}
	}
}

// TestImageRuns builds the image, reads it back from the OCI layout like a
// registry client would, extracts /ccproxy from the layer and runs it.
func TestImageRuns(t *testing.T) {
	bin := ccproxyBinary(t)
	out := t.TempDir()
	ociDir, tarPath := filepath.Join(out, "oci"), filepath.Join(out, "ccproxy.tar")

	var stdout, stderr bytes.Buffer
	args := []string{"-binary", bin, "-arch", runtime.GOARCH, "-oci", ociDir, "-tarball", tarPath,
		"-tag", "ccproxy:" + testVersion, "-version", testVersion}
	if err := run(args, &stdout, &stderr); err != nil {
		t.Fatalf("run: %v\n%s", err, stderr.String())
	}
	printed := strings.TrimSpace(stdout.String())
	if !strings.HasPrefix(printed, "sha256:") || len(printed) != len("sha256:")+64 {
		t.Fatalf("printed digest %q", printed)
	}

	// Read back from the layout.
	idx, err := layout.ImageIndexFromPath(ociDir)
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != 1 {
		t.Fatalf("layout holds %d manifests, want 1", len(im.Manifests))
	}
	desc := im.Manifests[0]
	if desc.Digest.String() != printed {
		t.Errorf("layout digest %s, printed %s", desc.Digest, printed)
	}
	if got := desc.Annotations["org.opencontainers.image.ref.name"]; got != testVersion {
		t.Errorf("ref.name %q, want %q", got, testVersion)
	}
	img, err := idx.Image(desc.Digest)
	if err != nil {
		t.Fatal(err)
	}

	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.OS != "linux" || cf.Architecture != runtime.GOARCH {
		t.Errorf("platform %s/%s", cf.OS, cf.Architecture)
	}
	if !slices.Equal(cf.Config.Entrypoint, []string{"/ccproxy"}) {
		t.Errorf("Entrypoint %q", cf.Config.Entrypoint)
	}
	if cf.Config.User != "65532:65532" {
		t.Errorf("User %q, want 65532:65532", cf.Config.User)
	}
	for _, p := range []string{"1313/tcp", "1314/tcp", "7777/tcp", "8200/tcp", "9090/tcp"} {
		if _, ok := cf.Config.ExposedPorts[p]; !ok {
			t.Errorf("port %s not exposed", p)
		}
	}

	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	if len(layers) != 1 {
		t.Fatalf("%d layers, want 1", len(layers))
	}
	entries := tarEntries(t, layers[0])
	e, ok := entries["ccproxy"]
	if !ok {
		t.Fatalf("no /ccproxy in the layer; entries: %v", keys(entries))
	}
	if e.hdr.Mode != 0o755 || e.hdr.Uid != 0 {
		t.Errorf("/ccproxy mode %o uid %d, want 755 uid 0", e.hdr.Mode, e.hdr.Uid)
	}
	if _, ok := entries["etc/passwd"]; ok {
		t.Error("layer carries /etc/passwd; the numeric user needs none")
	}
	if d := entries["var/run/ccproxy/"]; d.hdr == nil || d.hdr.Uid != nonroot {
		t.Errorf("/var/run/ccproxy missing or not owned by %d", nonroot)
	}

	// Run the binary exactly as extracted.
	extracted := filepath.Join(t.TempDir(), "ccproxy")
	if err := os.WriteFile(extracted, e.body, os.FileMode(e.hdr.Mode)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ver, err := exec.CommandContext(ctx, extracted, "version").CombinedOutput()
	if err != nil {
		t.Fatalf("ccproxy version from the image: %v\n%s", err, ver)
	}
	if !strings.HasPrefix(string(ver), "ccproxy ") {
		t.Errorf("ccproxy version printed %q", ver)
	}
	// A binary this test built carries the version it linked in.
	if os.Getenv("CCPROXY_IMAGE_TEST_BINARY") == "" && !strings.Contains(string(ver), testVersion) {
		t.Errorf("ccproxy version printed %q, want it to name %s", ver, testVersion)
	}
	want, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(e.body, want) {
		t.Error("/ccproxy in the layer differs from the binary given to the builder")
	}

	// The docker tarball carries the same config and layer.
	tag, err := name.NewTag("ccproxy:" + testVersion)
	if err != nil {
		t.Fatal(err)
	}
	timg, err := tarball.ImageFromPath(tarPath, &tag)
	if err != nil {
		t.Fatalf("reading docker tarball: %v", err)
	}
	for _, pair := range []struct {
		what string
		a, b func(v1.Image) (v1.Hash, error)
	}{
		{"config", v1.Image.ConfigName, v1.Image.ConfigName},
		{"layer", firstLayerDigest, firstLayerDigest},
	} {
		ha, err1 := pair.a(img)
		hb, err2 := pair.b(timg)
		if err := errors.Join(err1, err2); err != nil {
			t.Fatal(err)
		}
		if ha != hb {
			t.Errorf("%s differs between OCI layout (%s) and docker tarball (%s)", pair.what, ha, hb)
		}
	}
}

func firstLayerDigest(img v1.Image) (v1.Hash, error) {
	ls, err := img.Layers()
	if err != nil || len(ls) == 0 {
		return v1.Hash{}, errors.Join(err, errors.New("no layers"))
	}
	return ls[0].Digest()
}

func keys[V any](m map[string]V) []string {
	var k []string
	for s := range m {
		k = append(k, s)
	}
	slices.Sort(k)
	return k
}

// The same binary and timestamp give the same digest, so pinning the
// manifest to a digest is meaningful and a rebuild can be checked.
func TestReproducible(t *testing.T) {
	bin := ccproxyBinary(t)
	digest := func(s spec) v1.Hash {
		img, err := buildImage(s)
		if err != nil {
			t.Fatal(err)
		}
		d, err := img.Digest()
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	s := testSpec(bin)
	a, b := digest(s), digest(s)
	if a != b {
		t.Errorf("two builds of the same input: %s and %s", a, b)
	}
	s.Created = s.Created.Add(time.Second)
	if c := digest(s); c == a {
		t.Errorf("a different timestamp gave the same digest %s", c)
	}
}

func TestBuildRejects(t *testing.T) {
	dir := t.TempDir()
	notELF := filepath.Join(dir, "script")
	if err := os.WriteFile(notELF, []byte("#!/bin/sh\necho hi\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		mutate  func(*spec)
		wantErr string
	}{
		{"missing binary", func(s *spec) { s.Binary = filepath.Join(dir, "nope") }, "reading binary"},
		{"not ELF", func(s *spec) { s.Binary = notELF }, "not an ELF executable"},
		{"wrong arch", func(s *spec) { s.Arch = otherArch() }, "built for"},
		{"unknown arch", func(s *spec) { s.Arch = "mips" }, "not supported"},
		{"CA bundle not PEM", func(s *spec) { s.CACerts = notELF }, "no PEM certificate"},
	}
	// The test binary itself is an ELF file for this GOARCH, which is all
	// the architecture checks look at before anything else.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := testSpec(self)
			tt.mutate(&s)
			_, err := buildImage(s)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("buildImage: %v, want error containing %q", err, tt.wantErr)
			}
		})
	}
}

func otherArch() string {
	if runtime.GOARCH == "arm64" {
		return "amd64"
	}
	return "arm64"
}

// checkStatic must refuse a dynamically linked executable: in an image
// without a loader it would fail to start with "no such file or directory".
func TestCheckStaticRejectsDynamic(t *testing.T) {
	b, err := os.ReadFile("/bin/sh")
	if err != nil {
		t.Skip("no /bin/sh to use as a dynamically linked sample")
	}
	if !bytes.Contains(b, []byte("ld-linux")) && !bytes.Contains(b, []byte("ld-musl")) {
		t.Skip("/bin/sh is not dynamically linked here")
	}
	err = checkStatic(b, runtime.GOARCH)
	if err == nil || !strings.Contains(err.Error(), "dynamically linked") {
		t.Errorf("checkStatic(/bin/sh) = %v, want a dynamically-linked error", err)
	}
}

func TestRunFlags(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		env     string
		wantErr string
	}{
		{"no binary", []string{"-oci", "x"}, "", "-binary is required"},
		{"no output", []string{"-binary", "x"}, "", "nothing to write"},
		{"bad epoch", []string{"-binary", "x", "-oci", "y"}, "yesterday", "SOURCE_DATE_EPOCH"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("SOURCE_DATE_EPOCH", tt.env)
			var out, errb bytes.Buffer
			err := run(tt.args, &out, &errb)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("run(%q) = %v, want error containing %q", tt.args, err, tt.wantErr)
			}
		})
	}
}

// A non-empty directory that is not an OCI layout is never deleted.
func TestPrepareLayoutDirRefusesForeignDir(t *testing.T) {
	dir := t.TempDir()
	precious := filepath.Join(dir, "notes.txt")
	if err := os.WriteFile(precious, []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := prepareLayoutDir(dir); err == nil {
		t.Fatal("prepareLayoutDir accepted a foreign directory")
	}
	if _, err := os.Stat(precious); err != nil {
		t.Errorf("foreign file gone: %v", err)
	}

	layoutDir := t.TempDir()
	for _, f := range []string{"oci-layout", "index.json"} {
		if err := os.WriteFile(filepath.Join(layoutDir, f), []byte("{}"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := prepareLayoutDir(layoutDir); err != nil {
		t.Fatalf("old layout: %v", err)
	}
	if _, err := os.Stat(filepath.Join(layoutDir, "index.json")); !os.IsNotExist(err) {
		t.Errorf("old layout not cleared: %v", err)
	}
}
