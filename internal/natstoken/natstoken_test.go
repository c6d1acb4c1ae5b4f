package natstoken_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/keygate/keygate/internal/natstoken"
)

func TestLoopbackPort(t *testing.T) {
	for _, c := range []struct {
		urls string
		port int
		ok   bool
	}{
		{"nats://127.0.0.1:4222", 4222, true},
		{"nats://localhost", 4222, true},
		{"nats://[::1]:5000", 5000, true},
		{"nats://127.0.0.2:4333", 4333, true},
		{"nats://nats.example:4222,nats://127.0.0.1:4999", 4999, true},
		{"nats://nats.example:4222", 0, false},
		{"tls://127.0.0.1:4222", 0, false}, // TLS of its own: not the embedded server's files
		{"nats://10.0.0.1:4222", 0, false},
		{"127.0.0.1:4222", 0, false},
	} {
		port, ok := natstoken.LoopbackPort(c.urls)
		if port != c.port || ok != c.ok {
			t.Errorf("LoopbackPort(%q) = %d, %v; want %d, %v", c.urls, port, ok, c.port, c.ok)
		}
	}
}

// TestFilesAreTheUsers: the token and certificate files are 0600 in a 0700
// directory, replaced whole, and a missing file reads as nothing.
func TestFilesAreTheUsers(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keygate")
	if tok, err := natstoken.Read(dir, 4222); tok != "" || err != nil {
		t.Fatalf("no file: %q %v", tok, err)
	}
	for range 2 {
		if err := natstoken.Write(dir, 4222, natstoken.New()); err != nil {
			t.Fatal(err)
		}
	}
	if err := natstoken.WriteCert(dir, 4222, []byte("pem")); err != nil {
		t.Fatal(err)
	}
	tok, err := natstoken.Read(dir, 4222)
	if err != nil || len(tok) != 64 {
		t.Fatalf("token %q %v", tok, err)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("%s: %v %v, want 0700", dir, fi, err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Fatalf("%d files in %s, want the token and the certificate", len(entries), dir)
	}
	for _, e := range entries {
		if fi, _ := e.Info(); fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", e.Name(), fi.Mode().Perm())
		}
	}
}
