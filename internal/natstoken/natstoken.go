// Package natstoken keeps what a client on this machine needs to reach
// keygate's embedded NATS server, in files of the user's named after the
// server's port: the token the server requires of its clients, and the
// certificate the clients require of the server. The admin commands and
// other keygates run by the same user find both there with no flag; no
// other user or process without the files can write keys, and none that
// holds the port in the server's place learns the token.
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

// DefaultDir is where the files live unless configured:
// $XDG_CONFIG_HOME/keygate, else ~/.config/keygate.
func DefaultDir() (string, error) {
	d, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("no directory for the embedded NATS token (%w): set nats.token_dir", err)
	}
	return filepath.Join(d, "keygate"), nil
}

// Path is the token file of the embedded server on port, in dir ("" for
// DefaultDir).
func Path(dir string, port int) (string, error) { return file(dir, port, ".token") }

// CertPath is the certificate file of the embedded server on port, in dir
// ("" for DefaultDir): PEM, the server's self-signed certificate, which its
// clients trust and nothing else.
func CertPath(dir string, port int) (string, error) { return file(dir, port, ".crt") }

func file(dir string, port int, ext string) (string, error) {
	if dir == "" {
		var err error
		if dir, err = DefaultDir(); err != nil {
			return "", err
		}
	}
	return filepath.Join(dir, "nats-"+strconv.Itoa(port)+ext), nil
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
	b, err := ReadFile(p)
	return strings.TrimSpace(string(b)), err
}

// ReadFile returns the contents of p, or nil if there is no such file.
func ReadFile(p string) ([]byte, error) {
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("embedded NATS server: %w", err)
	}
	return b, nil
}

// Write saves token for port, readable by the user alone (the directory
// 0700, the file 0600), replacing any token saved before.
func Write(dir string, port int, token string) error {
	p, err := Path(dir, port)
	if err != nil {
		return err
	}
	return WriteFile(p, []byte(token+"\n"))
}

// WriteCert saves the server's certificate (PEM) for port, as Write does
// the token.
func WriteCert(dir string, port int, pem []byte) error {
	p, err := CertPath(dir, port)
	if err != nil {
		return err
	}
	return WriteFile(p, pem)
}

// WriteFile replaces p with b, atomically, readable by the user alone:
// the file 0600, a directory it creates 0700.
func WriteFile(p string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return fmt.Errorf("embedded NATS server: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(p), ".nats-*")
	if err != nil {
		return fmt.Errorf("embedded NATS server: %w", err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(b)
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
		return fmt.Errorf("embedded NATS server: %w", err)
	}
	return nil
}

// LoopbackPort returns the port of the first loopback server in a NATS
// URL or comma-separated seed list: the one whose files a client on the
// same machine as an embedded server looks for.
func LoopbackPort(urls string) (int, bool) {
	for _, u := range strings.Split(urls, ",") {
		if port, ok := loopbackPort(strings.TrimSpace(u)); ok {
			return port, true
		}
	}
	return 0, false
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
