package main

import (
	"archive/tar"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// TestImage builds the image from the real keygate binary as make image
// does, reads the tarball back and checks what a cluster relies on: it
// runs "keygate serve" as a non-root user with no shell, and its labels
// carry the version.
func TestImage(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "keygate")
	build := exec.Command("go", "build", "-o", bin, "../../../cmd/keygate")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out := filepath.Join(dir, "image.tar")
	if err := run([]string{"-binary", bin, "-version", "v1.2.3", "-image", "ghcr.io/keygate/keygate:v1.2.3", "-out", out}); err != nil {
		t.Fatal(err)
	}
	img, err := tarball.ImageFromPath(out, nil)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	c := cf.Config
	if !slices.Equal(append(c.Entrypoint, c.Cmd...), []string{"/keygate", "serve"}) {
		t.Errorf("runs %v %v, want /keygate serve", c.Entrypoint, c.Cmd)
	}
	if c.User == "" || c.User == "0" || strings.HasPrefix(c.User, "0:") || strings.HasPrefix(c.User, "root") {
		t.Errorf("user %q, want a non-root user", c.User)
	}
	if c.Labels["org.opencontainers.image.version"] != "v1.2.3" {
		t.Errorf("labels %v", c.Labels)
	}
	if cf.OS != "linux" || cf.Architecture == "" {
		t.Errorf("platform %s/%s", cf.OS, cf.Architecture)
	}
	files := imageFiles(t, img)
	if mode, ok := files["keygate"]; !ok || mode&0o111 == 0 {
		t.Errorf("/keygate missing or not executable (%o)", mode)
	}
	for name := range files {
		if strings.HasSuffix(name, "/sh") || strings.HasSuffix(name, "bash") {
			t.Errorf("the image has a shell: %s", name)
		}
	}
	if _, err := os.Stat(caBundle); err == nil {
		if _, ok := files["etc/ssl/certs/ca-certificates.crt"]; !ok {
			t.Error("no CA certificates")
		}
	}
}

// imageFiles lists the image's files with their modes.
func imageFiles(t *testing.T, img v1.Image) map[string]int64 {
	t.Helper()
	rc := mutate.Extract(img)
	defer rc.Close()
	files := map[string]int64{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files
		}
		if err != nil {
			t.Fatal(err)
		}
		files[h.Name] = h.Mode
	}
}
