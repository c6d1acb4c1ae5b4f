// Command imagebuild builds keygate's container image without a Docker
// engine: the static keygate binary on an empty base, run as a non-root
// user, with the CA certificates of the build machine (for TLS to NATS).
// It writes the image as a tarball that `docker load` and `crane push`
// read, and pushes it to a registry when asked.
//
//	go run ./k8s/internal/imagebuild -binary bin/keygate -version v0.1.0 \
//	    -image ghcr.io/keygate/keygate:v0.1.0 -out bin/keygate-image.tar [-push]
package main

import (
	"archive/tar"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// The image's user: distroless's "nonroot".
const (
	uid = 65532
	gid = 65532
)

// caBundle is where Debian keeps the CA certificates; Go reads the same
// path in the image.
const caBundle = "/etc/ssl/certs/ca-certificates.crt"

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "imagebuild:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("imagebuild", flag.ContinueOnError)
	binary := fs.String("binary", "bin/keygate", "the static keygate binary")
	version := fs.String("version", "devel", "version for the image's labels")
	ref := fs.String("image", "ghcr.io/keygate/keygate:devel", "image reference")
	out := fs.String("out", "bin/keygate-image.tar", "tarball to write")
	push := fs.Bool("push", false, "also push to the registry named by -image (credentials from ~/.docker/config.json)")
	arch := fs.String("arch", runtime.GOARCH, "architecture of the binary")
	if err := fs.Parse(args); err != nil {
		return err
	}
	tag, err := name.NewTag(*ref)
	if err != nil {
		return fmt.Errorf("-image: %w", err)
	}
	bin, err := os.ReadFile(*binary)
	if err != nil {
		return err
	}
	img, err := Build(bin, *version, *arch)
	if err != nil {
		return err
	}
	if err := tarball.WriteToFile(*out, tag, img); err != nil {
		return fmt.Errorf("write %s: %w", *out, err)
	}
	d, _ := img.Digest()
	fmt.Printf("wrote %s (%s, %s)\n", *out, tag, d)
	if *push {
		if err := remote.Write(tag, img, remote.WithAuthFromKeychain(authn.DefaultKeychain)); err != nil {
			return fmt.Errorf("push %s: %w", tag, err)
		}
		fmt.Printf("pushed %s\n", tag)
	}
	return nil
}

// Build returns the image: one layer holding /keygate, the nonroot user,
// /tmp and the CA bundle, and a config that runs "keygate serve".
func Build(binary []byte, version, arch string) (v1.Image, error) {
	layer, err := rootLayer(binary)
	if err != nil {
		return nil, err
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", arch
	cf.Created = v1.Time{Time: time.Unix(0, 0).UTC()} // reproducible
	cf.Config = v1.Config{
		Entrypoint:   []string{"/keygate"},
		Cmd:          []string{"serve"},
		User:         fmt.Sprintf("%d:%d", uid, gid),
		WorkingDir:   "/",
		Env:          []string{"PATH=/"},
		ExposedPorts: map[string]struct{}{"9191/tcp": {}, "9090/tcp": {}},
		Labels: map[string]string{
			"org.opencontainers.image.title":       "keygate",
			"org.opencontainers.image.description": "API-key gatekeeper for AI APIs: Envoy ext_authz over NATS",
			"org.opencontainers.image.version":     version,
			"org.opencontainers.image.source":      "https://github.com/keygate/keygate",
			"org.opencontainers.image.licenses":    "Apache-2.0",
		},
	}
	return mutate.ConfigFile(img, cf)
}

// file is an entry of the image's file system; a name ending in "/" is a
// directory.
type file struct {
	name string
	mode int64
	body []byte
}

// rootLayer is the image's file system as one layer.
func rootLayer(binary []byte) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	files := []file{
		{"etc/", 0o755, nil},
		{"etc/passwd", 0o644, []byte(fmt.Sprintf("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:%d:%d:nonroot:/home/nonroot:/sbin/nologin\n", uid, gid))},
		{"etc/group", 0o644, []byte(fmt.Sprintf("root:x:0:\nnonroot:x:%d:\n", gid))},
		{"home/", 0o755, nil},
		{"home/nonroot/", 0o700, nil},
		{"tmp/", 0o1777, nil},
		{"keygate", 0o755, binary},
	}
	ca, err := os.ReadFile(caBundle)
	switch {
	case err == nil:
		files = append(files, file{"etc/ssl/", 0o755, nil}, file{"etc/ssl/certs/", 0o755, nil},
			file{"etc/ssl/certs/ca-certificates.crt", 0o644, ca})
	case !errors.Is(err, os.ErrNotExist):
		return nil, err
	}
	for _, f := range files {
		h := &tar.Header{Name: f.name, Mode: f.mode, ModTime: time.Unix(0, 0), Format: tar.FormatPAX}
		switch {
		case f.name[len(f.name)-1] == '/':
			h.Typeflag = tar.TypeDir
		default:
			h.Typeflag, h.Size = tar.TypeReg, int64(len(f.body))
		}
		if f.name == "home/nonroot/" {
			h.Uid, h.Gid = uid, gid
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.body); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	b := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
}
