// Package natstoken keeps the access token of keygate's embedded NATS
// server in a file of the user's, named after the server's port, so that
// the admin commands and other clients on the same machine find it with
// no flag, and no other user or process without the file can write keys.
package natstoken

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// DefaultDir is where token files live unless configured:
// $XDG_CONFIG_HOME/keygate, else ~/.config/keygate.
func DefaultDir() (string, error) {
	d, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("no directory for the embedded NATS token (%w): set nats.token or nats.token_dir", err)
	}
	return filepath.Join(d, "keygate"), nil
}

// Path is the token file of the embedded server on port, in dir ("" for
// DefaultDir).
func Path(dir string, port int) (string, error) {
	if dir == "" {
		var err error
		if dir, err = DefaultDir(); err != nil {
			return "", err
		}
	}
	return filepath.Join(dir, "nats-"+strconv.Itoa(port)+".token"), nil
}

// New returns a random token: 32 bytes, hex.
func New() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return hex.EncodeToString(b)
}

// Read returns the token saved for port, or "" if there is none.
func Read(dir string, port int) (string, error) {
	p, err := Path(dir, port)
	if err != nil {
		return "", err
	}
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("embedded NATS token: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// Write saves token for port, readable by the user alone (the directory
// 0700, the file 0600), replacing any token saved before.
func Write(dir string, port int, token string) error {
	p, err := Path(dir, port)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return fmt.Errorf("embedded NATS token: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(p), ".nats-token-*")
	if err != nil {
		return fmt.Errorf("embedded NATS token: %w", err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.WriteString(token + "\n")
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp.Name(), 0o600)
	}
	if err == nil {
		err = os.Rename(tmp.Name(), p)
	}
	if err != nil {
		return fmt.Errorf("embedded NATS token: %w", err)
	}
	return nil
}

// ForURLs returns the token saved for the first loopback server in a NATS
// URL or comma-separated seed list, or "" if there is none: a client on
// the same machine as an embedded server finds its token this way.
func ForURLs(dir, urls string) (string, error) {
	for _, u := range strings.Split(urls, ",") {
		if port, ok := loopbackPort(strings.TrimSpace(u)); ok {
			return Read(dir, port)
		}
	}
	return "", nil
}

// loopbackPort returns the port of a nats:// URL on a loopback host.
func loopbackPort(s string) (int, bool) {
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "nats" {
		return 0, false
	}
	host, port := u.Hostname(), u.Port()
	if port == "" {
		port = "4222"
	}
	ip := net.ParseIP(host)
	if host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return 0, false
	}
	n, err := strconv.Atoi(port)
	return n, err == nil
}
