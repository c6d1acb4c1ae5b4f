package broker_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/keygate/keygate/internal/broker"
	"github.com/keygate/keygate/internal/natstest"
	"github.com/keygate/keygate/internal/natstoken"
	"github.com/keygate/keygate/internal/poll"
)

// dirs are an embedded server's data and token directories.
type dirs struct{ data, token string }

func newDirs(t *testing.T) dirs { return dirs{data: t.TempDir(), token: t.TempDir()} }

func embed(t *testing.T, d dirs, listen string) *broker.Conn {
	t.Helper()
	c, err := broker.Connect(broker.Options{Listen: listen, DataDir: d.data, TokenDir: d.token, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func client(d dirs, url string) (*broker.Conn, error) {
	return broker.Connect(broker.Options{URL: url, TokenDir: d.token, Logger: slog.New(slog.DiscardHandler)})
}

func token(t *testing.T, d dirs, port int) string {
	t.Helper()
	tok, err := natstoken.Read(d.token, port)
	if err != nil || len(tok) != 64 {
		t.Fatalf("token file for port %d: %q %v", port, tok, err)
	}
	return tok
}

func portOf(c *broker.Conn) int { return c.ServerAddr().(*net.TCPAddr).Port }

// TestEmbeddedServerFiles: the key pair stays in the data directory (the
// key 0600), the certificate and token go to the token directory (0600),
// and a restart on the same data directory keeps all three.
func TestEmbeddedServerFiles(t *testing.T) {
	d := newDirs(t)
	addr := natstest.FreeAddr(t)
	c := embed(t, d, addr)
	port := portOf(c)
	tok := token(t, d, port)
	key := filepath.Join(d.data, "nats-server.key")
	certFile, _ := natstoken.CertPath(d.token, port)
	tokenFile, _ := natstoken.Path(d.token, port)
	for _, f := range []string{key, certFile, tokenFile} {
		if fi, err := os.Stat(f); err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v %v, want mode 0600", f, fi, err)
		}
	}
	cert, _ := os.ReadFile(certFile)
	if !bytes.Equal(cert, mustRead(t, filepath.Join(d.data, "nats-server.crt"))) {
		t.Fatal("the token directory's certificate is not the data directory's")
	}
	c.Close()

	embed(t, d, addr)
	if token(t, d, port) != tok || !bytes.Equal(mustRead(t, certFile), cert) {
		t.Fatal("a restart on the same data directory changed the token or the certificate")
	}
	// A new data directory is a new server: new key pair, new token (the
	// old one may have reached anyone).
	other := dirs{data: t.TempDir(), token: d.token}
	c3 := embed(t, other, "127.0.0.1:-1")
	if p := portOf(c3); p == port {
		t.Fatal("same port")
	}
}

func mustRead(t *testing.T, f string) []byte {
	t.Helper()
	b, err := os.ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestNewKeyPairNewToken: a server that makes a new key pair also makes a
// new token, even when one is saved for its port.
func TestNewKeyPairNewToken(t *testing.T) {
	d := newDirs(t)
	addr := natstest.FreeAddr(t)
	c := embed(t, d, addr)
	port := portOf(c)
	old := token(t, d, port)
	c.Close()
	embed(t, dirs{data: t.TempDir(), token: d.token}, addr)
	if token(t, d, port) == old {
		t.Fatal("a new key pair kept the old token")
	}
}

// TestEmbeddedServerIsTLSFirstOnly: a client that finds the files connects;
// a client with the right token but without TLS, or with TLS that trusts
// another certificate, does not.
func TestEmbeddedServerIsTLSFirstOnly(t *testing.T) {
	d := newDirs(t)
	c := embed(t, d, "127.0.0.1:-1")
	port := portOf(c)
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)
	cl, err := client(d, url)
	if err != nil {
		t.Fatalf("client that finds the certificate and token: %v", err)
	}
	st, err := cl.NC.TLSConnectionState()
	if err != nil || st.Version != tls.VersionTLS13 {
		t.Fatalf("client connection: %v, TLS version %x", err, st.Version)
	}
	cl.Close()
	tok := token(t, d, port)
	if nc, err := nats.Connect(url, nats.Token(tok), nats.Timeout(500*time.Millisecond)); err == nil {
		nc.Close()
		t.Fatal("a plaintext client connected")
	}
	other, _ := selfSigned(t)
	pool := x509.NewCertPool()
	pool.AddCert(other.Leaf)
	if nc, err := nats.Connect(url, nats.Token(tok), nats.TLSHandshakeFirst(), nats.Secure(&tls.Config{RootCAs: pool, ServerName: "localhost", MinVersion: tls.VersionTLS13})); err == nil {
		nc.Close()
		t.Fatal("a client trusting another certificate connected")
	}
}

// selfSigned makes a certificate for localhost and 127.0.0.1, as a squatter
// would for its own TLS server.
func selfSigned(t *testing.T) (tls.Certificate, *tls.Config) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "keygate embedded NATS server"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), DNSNames: []string{"localhost"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	pair := tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
	return pair, &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
}

// TestSquatterLearnsNothing: while the embedded server is away, whoever
// holds its port gets only TLS handshakes from its clients: from a client
// reconnecting and from new clients, no token, no CONNECT, nothing but a
// ClientHello. A rogue nats-server that lets every client in, plain or
// with TLS of its own, gets no client and no token. When the server is back, the client reconnects.
func TestSquatterLearnsNothing(t *testing.T) {
	d := newDirs(t)
	addr := natstest.FreeAddr(t)
	emb := embed(t, d, addr)
	url := "nats://" + addr
	tok := token(t, d, portOf(emb))
	var connects atomic.Int32 // (re)connections of cl
	cl, err := broker.Connect(broker.Options{URL: url, TokenDir: d.token, Logger: slog.New(slog.DiscardHandler),
		OnState: func(up bool) {
			if up {
				connects.Add(1)
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	emb.Close()

	sq := natstest.Squat(t, addr)
	if _, err := client(d, url); err == nil {
		t.Fatal("a new client connected to the squatter")
	}
	poll.Until(t, 30*time.Second, "three reconnects to the squatter", func() bool { return sq.Conns() >= 4 })
	sq.Close()
	got := sq.Received()
	for i, b := range got {
		if len(b) == 0 || b[0] != 0x16 { // a TLS handshake record
			t.Errorf("connection %d began with %q, not a TLS handshake", i, b[:min(len(b), 16)])
		}
		if bytes.Contains(b, []byte(tok)) || bytes.Contains(b, []byte("CONNECT")) {
			t.Errorf("connection %d sent the token or a CONNECT in the clear", i)
		}
	}

	// Rogue servers: no auth, JetStream on, one plain, one with TLS
	// handshake first and a certificate of its own.
	_, rogueTLS := selfSigned(t)
	host, port, _ := net.SplitHostPort(addr)
	for _, rogue := range []*server.Options{{}, {TLSConfig: rogueTLS, TLSHandshakeFirst: true}} {
		tokens := &natstest.Tokens{} // lets every client in, records its token
		rogue.Host, rogue.CustomClientAuthentication = host, tokens
		fmt.Sscan(port, &rogue.Port)
		ns := natstest.RunWith(t, rogue)
		_, err := client(d, url)
		if err == nil {
			t.Fatalf("a new client connected to a rogue server (TLS %v)", rogue.TLSConfig != nil)
		}
		if !strings.Contains(err.Error(), "not keygate's embedded server") {
			t.Errorf("error does not say the server is not the pinned one: %v", err)
		}
		total := func() uint64 { return totalConns(ns) }
		seen := total()
		poll.Until(t, 30*time.Second, "reconnect attempts on the rogue server", func() bool { return total() >= seen+3 })
		if cl.NC.IsConnected() || connects.Load() != 0 || len(tokens.Seen()) != 0 {
			t.Fatalf("the client connected to a rogue server (TLS %v), tokens %q", rogue.TLSConfig != nil, tokens.Seen())
		}
		ns.Shutdown()
		ns.WaitForShutdown()
	}

	embed(t, d, addr)
	poll.Until(t, 30*time.Second, "reconnected to the restarted server", func() bool { return connects.Load() > 0 })
	if !cl.NC.IsConnected() || connects.Load() != 1 {
		t.Fatalf("%d reconnections, want 1", connects.Load())
	}
}

// TestReconnectsAfterAuthErrors: a client reconnects to its server after
// any number of authorization errors from a server with another token on
// the same port.
func TestReconnectsAfterAuthErrors(t *testing.T) {
	addr := natstest.FreeAddr(t)
	host, port, _ := net.SplitHostPort(addr)
	opts := func(token string) *server.Options {
		o := &server.Options{Host: host, Authorization: token, StoreDir: t.TempDir()}
		fmt.Sscan(port, &o.Port)
		return o
	}
	real := opts("right")
	ns := natstest.RunWith(t, real)
	cl, err := broker.Connect(broker.Options{URL: "nats://" + addr, Token: "right", TokenDir: t.TempDir(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ns.Shutdown()
	ns.WaitForShutdown()
	squat := natstest.RunWith(t, opts("other"))
	poll.Until(t, 30*time.Second, "five refused reconnects", func() bool { return totalConns(squat) >= 5 })
	squat.Shutdown()
	squat.WaitForShutdown()
	if cl.NC.IsClosed() {
		t.Fatal("the client gave up after authorization errors")
	}
	natstest.RunWith(t, real)
	poll.Until(t, 30*time.Second, "reconnected", cl.NC.IsConnected)
}

// TestWrongTokenNamesItsSource: a refused token is reported with where it
// came from and where the right one is.
func TestWrongTokenNamesItsSource(t *testing.T) {
	d := newDirs(t)
	c := embed(t, d, "127.0.0.1:-1")
	port := portOf(c)
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)
	tokenFile, _ := natstoken.Path(d.token, port)

	_, err := broker.Connect(broker.Options{URL: url, Token: "wrong", TokenDir: d.token})
	for _, want := range []string{"Authorization Violation", "KEYGATE_NATS_TOKEN", tokenFile} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("wrong KEYGATE_NATS_TOKEN: %v, want it to name %q", err, want)
		}
	}
	if err := natstoken.Write(d.token, port, "wrong"); err != nil {
		t.Fatal(err)
	}
	_, err = client(d, url)
	for _, want := range []string{"Authorization Violation", "KEYGATE_NATS_TOKEN", tokenFile} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("wrong token file: %v, want it to name %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "wrong") {
		t.Errorf("the error shows the token: %v", err)
	}
}

// TestOneServerPerDataDir: a second server on the same data directory is
// refused with an error naming it, while the first runs; once the first
// stops, the directory is free.
func TestOneServerPerDataDir(t *testing.T) {
	d := newDirs(t)
	first := embed(t, d, "127.0.0.1:-1")
	_, err := broker.Connect(broker.Options{Listen: "127.0.0.1:-1", DataDir: d.data, TokenDir: d.token, Logger: slog.New(slog.DiscardHandler)})
	if err == nil || !strings.Contains(err.Error(), d.data) || !strings.Contains(err.Error(), "another keygate") {
		t.Fatalf("second server on the same data directory: %v", err)
	}
	first.Close()
	embed(t, d, "127.0.0.1:-1")
}

// totalConns is how many client connections s has accepted.
func totalConns(s *server.Server) uint64 {
	v, err := s.Varz(nil)
	if err != nil {
		return 0
	}
	return v.TotalConnections
}

// TestKeyReadableByOthersRefused: a private key that others may read is
// not used; the error names the file and what to do.
func TestKeyReadableByOthersRefused(t *testing.T) {
	d := newDirs(t)
	embed(t, d, "127.0.0.1:-1").Close()
	key := filepath.Join(d.data, "nats-server.key")
	if err := os.Chmod(key, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := broker.Connect(broker.Options{Listen: "127.0.0.1:-1", DataDir: d.data, TokenDir: d.token, Logger: slog.New(slog.DiscardHandler)})
	if err == nil || !strings.Contains(err.Error(), key) || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("key readable by others: %v", err)
	}
}
