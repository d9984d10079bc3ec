// Command image builds ccproxy's container image from a static ccproxy
// binary, fully offline: no base image is pulled and no Docker daemon is
// needed. The image has one layer holding /ccproxy (plus, optionally, a CA
// bundle) and runs as uid/gid 65532 without an /etc/passwd: a numeric user
// needs none. It writes an OCI image layout (for crane/skopeo to push) and a
// `docker load`-able tarball, and prints the image digest on stdout.
//
//	CGO_ENABLED=0 go build -trimpath -o _out/ccproxy ./cmd/ccproxy
//	go run ./deploy/image -binary _out/ccproxy -oci _out/oci -tarball _out/ccproxy.tar -tag ccproxy:dev
//
// scripts/image.sh wraps both steps.
package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"debug/elf"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// nonroot is the uid and gid the image runs as: distroless's "nonroot",
// which the manifest's runAsUser repeats. Kubernetes' runAsNonRoot check
// needs a numeric user in the image config to verify it without a passwd.
const nonroot = 65532

// defaultPorts are the Coordinator ports the socat port-forwarder relays
// (1313 user API, 1314 HTTP API, 7777 mesh API, 8200 transit) and the admin
// endpoint (9090).
var defaultPorts = []string{"1313/tcp", "1314/tcp", "7777/tcp", "8200/tcp", "9090/tcp"}

// spec says what goes into the image.
type spec struct {
	Binary   string    // static linux ccproxy binary, becomes /ccproxy
	CACerts  string    // optional PEM bundle, becomes /etc/ssl/certs/ca-certificates.crt
	Arch     string    // GOARCH of Binary
	Version  string    // org.opencontainers.image.version
	Revision string    // org.opencontainers.image.revision
	Source   string    // org.opencontainers.image.source
	Created  time.Time // image and file timestamps; fixed so builds are reproducible
	Ports    []string  // exposed ports, "1313/tcp"
}

// buildImage assembles the image described by s.
func buildImage(s spec) (v1.Image, error) {
	var ca []byte
	if s.CACerts != "" {
		var err error
		if ca, err = os.ReadFile(s.CACerts); err != nil {
			return nil, fmt.Errorf("reading CA bundle: %w", err)
		}
		if !bytes.Contains(ca, []byte("-----BEGIN CERTIFICATE-----")) {
			return nil, fmt.Errorf("CA bundle %s holds no PEM certificate", s.CACerts)
		}
	}
	bin, err := os.ReadFile(s.Binary)
	if err != nil {
		return nil, fmt.Errorf("reading binary: %w", err)
	}
	if err := checkStatic(bin, s.Arch); err != nil {
		return nil, fmt.Errorf("binary %s: %w", s.Binary, err)
	}
	layerTar, err := layerTar(bin, ca, s.Created)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(
		func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(layerTar)), nil },
		tarball.WithMediaType(types.OCILayer),
		// Level 6 is 10% smaller than the library's default (BestSpeed);
		// level 9 saves under 1% more at twice the time.
		tarball.WithCompressionLevel(gzip.DefaultCompression),
		// Compress once: the digest, the OCI layout and the tarball all
		// read the compressed bytes.
		tarball.WithCompressedCaching,
	)
	if err != nil {
		return nil, fmt.Errorf("creating layer: %w", err)
	}

	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.Append(img, mutate.Addendum{
		Layer:     layer,
		MediaType: types.OCILayer,
		History: v1.History{
			Created:   v1.Time{Time: s.Created},
			CreatedBy: "ccproxy deploy/image",
			Comment:   "static ccproxy binary",
		},
	})
	if err != nil {
		return nil, fmt.Errorf("appending layer: %w", err)
	}

	exposed := make(map[string]struct{}, len(s.Ports))
	for _, p := range s.Ports {
		exposed[p] = struct{}{}
	}
	labels := map[string]string{
		"org.opencontainers.image.title":       "ccproxy",
		"org.opencontainers.image.description": "Relay for Contrast's attested-TLS port that names what went wrong with every connection",
		"org.opencontainers.image.version":     s.Version,
		"org.opencontainers.image.revision":    s.Revision,
		"org.opencontainers.image.created":     s.Created.UTC().Format(time.RFC3339),
	}
	if s.Source != "" {
		labels["org.opencontainers.image.source"] = s.Source
	}
	img, err = mutate.Config(img, v1.Config{
		Entrypoint:   []string{"/ccproxy"},
		User:         fmt.Sprintf("%d:%d", nonroot, nonroot),
		ExposedPorts: exposed,
		WorkingDir:   "/",
		Labels:       labels,
	})
	if err != nil {
		return nil, fmt.Errorf("setting config: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	cf = cf.DeepCopy()
	cf.OS = "linux"
	cf.Architecture = s.Arch
	cf.Created = v1.Time{Time: s.Created}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, fmt.Errorf("setting platform: %w", err)
	}
	return img, nil
}

// layerTar writes the single layer: /ccproxy, an optional CA bundle, and
// /var/run/ccproxy owned by the nonroot user so --trace-file works under
// plain `docker run` too (in Kubernetes an emptyDir is mounted there). Every
// header is fixed (owner, mode, time) so the same binary always gives the
// same digest.
func layerTar(bin, ca []byte, created time.Time) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dir := func(name string, uid, mode int) error {
		return tw.WriteHeader(&tar.Header{
			Typeflag: tar.TypeDir, Name: name, Mode: int64(mode),
			Uid: uid, Gid: uid, ModTime: created, Format: tar.FormatPAX,
		})
	}
	file := func(name string, mode int, data []byte) error {
		if err := tw.WriteHeader(&tar.Header{
			Typeflag: tar.TypeReg, Name: name, Mode: int64(mode), Size: int64(len(data)),
			ModTime: created, Format: tar.FormatPAX,
		}); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	err := file("ccproxy", 0o755, bin)
	if err == nil && ca != nil {
		err = errors.Join(
			dir("etc/", 0, 0o755), dir("etc/ssl/", 0, 0o755), dir("etc/ssl/certs/", 0, 0o755),
			file("etc/ssl/certs/ca-certificates.crt", 0o644, ca),
		)
	}
	if err == nil {
		err = errors.Join(dir("var/", 0, 0o755), dir("var/run/", 0, 0o755), dir("var/run/ccproxy/", nonroot, 0o755))
	}
	if err == nil {
		err = tw.Close()
	}
	if err != nil {
		return nil, fmt.Errorf("writing layer tar: %w", err)
	}
	return buf.Bytes(), nil
}

// elfMachine maps the GOARCH values ccproxy ships for to ELF machine types.
var elfMachine = map[string]elf.Machine{
	"amd64":   elf.EM_X86_64,
	"arm64":   elf.EM_AARCH64,
	"s390x":   elf.EM_S390,
	"ppc64le": elf.EM_PPC64,
}

// checkStatic rejects a binary that would not start in an image with
// nothing else in it: not a Linux ELF executable, built for another
// architecture than the image claims, or dynamically linked (it names an
// interpreter such as /lib64/ld-linux-x86-64.so.2, which the image lacks, so
// exec fails with a baffling "no such file or directory").
func checkStatic(bin []byte, arch string) error {
	f, err := elf.NewFile(bytes.NewReader(bin))
	if err != nil {
		return fmt.Errorf("not an ELF executable (build with GOOS=linux): %w", err)
	}
	defer f.Close()
	want, ok := elfMachine[arch]
	if !ok {
		return fmt.Errorf("architecture %q is not supported", arch)
	}
	if f.Machine != want {
		return fmt.Errorf("built for %v, the image is for %s (%v)", f.Machine, arch, want)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return errors.New("dynamically linked (build with CGO_ENABLED=0)")
		}
	}
	return nil
}

// writeOutputs writes img as an OCI layout in ociDir (replacing an earlier
// layout there) and, if tarPath is set, as a docker-loadable tarball tagged
// tag.
func writeOutputs(img v1.Image, ociDir, tarPath, tag string) error {
	ref, err := name.NewTag(tag)
	if err != nil {
		return fmt.Errorf("-tag %q: %w", tag, err)
	}
	if ociDir != "" {
		if err := prepareLayoutDir(ociDir); err != nil {
			return err
		}
		p, err := layout.Write(ociDir, empty.Index)
		if err != nil {
			return fmt.Errorf("writing OCI layout %s: %w", ociDir, err)
		}
		cf, err := img.ConfigFile()
		if err != nil {
			return fmt.Errorf("reading config: %w", err)
		}
		if err := p.AppendImage(img,
			layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": ref.TagStr()}),
			layout.WithPlatform(v1.Platform{OS: cf.OS, Architecture: cf.Architecture}),
		); err != nil {
			return fmt.Errorf("writing image to OCI layout %s: %w", ociDir, err)
		}
	}
	if tarPath != "" {
		if err := tarball.WriteToFile(tarPath, ref, img); err != nil {
			return fmt.Errorf("writing tarball %s: %w", tarPath, err)
		}
	}
	return nil
}

// prepareLayoutDir empties dir if it holds an earlier OCI layout, so stale
// blobs and index entries do not pile up, and refuses to touch a non-empty
// directory that is anything else.
func prepareLayoutDir(dir string) error {
	entries, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, os.ErrNotExist) || (err == nil && len(entries) == 0):
		return nil
	case err != nil:
		return fmt.Errorf("-oci %s: %w", dir, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "oci-layout")); err != nil {
		return fmt.Errorf("-oci %s: directory is not empty and not an OCI layout; refusing to overwrite it", dir)
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("-oci %s: removing old layout: %w", dir, err)
	}
	return nil
}

// imageSize is the bytes a registry stores for img: manifest, config and
// compressed layers.
func imageSize(img v1.Image) (int64, error) {
	m, err := img.RawManifest()
	if err != nil {
		return 0, err
	}
	c, err := img.RawConfigFile()
	if err != nil {
		return 0, err
	}
	total := int64(len(m) + len(c))
	layers, err := img.Layers()
	if err != nil {
		return 0, err
	}
	for _, l := range layers {
		n, err := l.Size()
		if err != nil {
			return 0, err
		}
		total += n
	}
	return total, nil
}

// createdTime reads SOURCE_DATE_EPOCH (the reproducible-builds convention);
// without it the timestamp is the Unix epoch, so that rebuilding the same
// binary gives the same digest.
func createdTime(epoch string) (time.Time, error) {
	if epoch == "" {
		return time.Unix(0, 0).UTC(), nil
	}
	sec, err := strconv.ParseInt(epoch, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH %q: %w", epoch, err)
	}
	return time.Unix(sec, 0).UTC(), nil
}

func run(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("image", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var s spec
	var ociDir, tarPath, tag, ports string
	fs.StringVar(&s.Binary, "binary", "", "static linux ccproxy binary (required)")
	fs.StringVar(&s.CACerts, "ca-certs", "", "PEM CA bundle to install as /etc/ssl/certs/ca-certificates.crt (for OTLP over HTTPS and collateral fetches)")
	fs.StringVar(&s.Arch, "arch", runtime.GOARCH, "GOARCH the binary was built for")
	fs.StringVar(&s.Version, "version", "dev", "image version label")
	fs.StringVar(&s.Revision, "revision", "unknown", "source revision label")
	fs.StringVar(&s.Source, "source", "https://github.com/ccproxy-dev/ccproxy", "source repository label")
	fs.StringVar(&ports, "ports", strings.Join(defaultPorts, ","), "comma-separated exposed ports")
	fs.StringVar(&ociDir, "oci", "", "write an OCI image layout to this directory")
	fs.StringVar(&tarPath, "tarball", "", "write a docker-loadable tarball to this file")
	fs.StringVar(&tag, "tag", "ccproxy:dev", "tag recorded in the tarball and the layout's ref.name")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if s.Binary == "" {
		return errors.New("-binary is required")
	}
	if ociDir == "" && tarPath == "" {
		return errors.New("nothing to write: set -oci and/or -tarball")
	}
	for _, p := range strings.Split(ports, ",") {
		if p = strings.TrimSpace(p); p != "" {
			s.Ports = append(s.Ports, p)
		}
	}
	var err error
	if s.Created, err = createdTime(os.Getenv("SOURCE_DATE_EPOCH")); err != nil {
		return err
	}

	img, err := buildImage(s)
	if err != nil {
		return err
	}
	if err := writeOutputs(img, ociDir, tarPath, tag); err != nil {
		return err
	}
	digest, err := img.Digest()
	if err != nil {
		return fmt.Errorf("computing digest: %w", err)
	}
	size, err := imageSize(img)
	if err != nil {
		return fmt.Errorf("computing size: %w", err)
	}
	fmt.Fprintf(stderr, "image %s: %d bytes compressed (linux/%s)\n", tag, size, s.Arch)
	fmt.Fprintln(stdout, digest)
	return nil
}

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "image:", err)
		}
		os.Exit(2)
	}
}
