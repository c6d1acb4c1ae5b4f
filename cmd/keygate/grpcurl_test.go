package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/keygate/keygate/internal/natstest"
)

// grpcurl is the pinned grpcurl that make installs in .tools, or $GRPCURL.
func grpcurl(t *testing.T) string {
	t.Helper()
	p := os.Getenv("GRPCURL")
	if p == "" {
		p, _ = filepath.Abs("../../.tools/grpcurl")
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("grpcurl not found at %s: run `make tools` (it installs the pinned grpcurl) or set GRPCURL", p)
	}
	return p
}

// TestREADMEGrpcurl runs the README's grpcurl command as written, with a
// real key and the test server's address: through server reflection it
// lists the service and calls Check.
func TestREADMEGrpcurl(t *testing.T) {
	bin := grpcurl(t)
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	command := regexp.MustCompile("`(grpcurl -plaintext [^`]*Check)`").FindStringSubmatch(string(readme))
	if command == nil {
		t.Fatal("the README has no grpcurl command")
	}
	url := natstest.Run(t).ClientURL()
	key := createTestKey(t, url)
	s := startServe(t, nil, "--nats-url", url)
	addr := s.grpc
	out, err := exec.Command(bin, "-plaintext", addr, "list").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "envoy.service.auth.v3.Authorization") {
		t.Fatalf("grpcurl list: %v\n%s", err, out)
	}
	line := strings.NewReplacer("ghub_sk_live_...", key, "127.0.0.1:9191", addr, "grpcurl ", bin+" ").Replace(command[1])
	out, err = exec.Command("sh", "-c", line).CombinedOutput()
	if err != nil || !strings.Contains(string(out), `"okResponse"`) || !strings.Contains(string(out), "x-keygate-key-id") {
		t.Fatalf("%s: %v\n%s", command[1], err, out)
	}
	if strings.Contains(s.log(), key) {
		t.Fatal("the key is in the log")
	}
	off := startServe(t, []string{"KEYGATE_GRPC_REFLECTION=false"}, "--nats-url", url)
	if out, err := exec.Command(bin, "-plaintext", off.grpc, "list").CombinedOutput(); err == nil {
		t.Fatalf("grpc_reflection: false, yet grpcurl lists services:\n%s", out)
	}
}
