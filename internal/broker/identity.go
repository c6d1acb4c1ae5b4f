package broker

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/keygate/keygate/internal/natstoken"
)

// The embedded server's key pair lives in its data directory; the
// certificate is also copied next to its token, where clients find it.
const (
	keyFile  = "nats-server.key"
	certFile = "nats-server.crt"
)

// identity is the embedded server's key pair.
type identity struct {
	pair tls.Certificate
	pem  []byte // the certificate
	leaf *x509.Certificate
	// fresh: made by this start, so any token of an earlier server on the
	// same port may have been sent to whoever held the port.
	fresh bool
}

// loadIdentity reads the key pair from dir, or makes and saves one (the key
// 0600) if there is none. host is the server's listen host, named in the
// certificate beside localhost and the loopback addresses.
func loadIdentity(dir, host string) (*identity, error) {
	kp, cp := filepath.Join(dir, keyFile), filepath.Join(dir, certFile)
	keyPEM, err := natstoken.ReadFile(kp)
	if err != nil {
		return nil, err
	}
	certPEM, err := natstoken.ReadFile(cp)
	if err != nil {
		return nil, err
	}
	if keyPEM == nil || certPEM == nil {
		return newIdentity(kp, cp, host)
	}
	if fi, err := os.Stat(kp); err == nil && fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%s: mode %#o lets others read the embedded NATS server's private key: chmod 600 it", kp, fi.Mode().Perm())
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("%s, %s: %w (remove both to make a new pair)", kp, cp, err)
	}
	return &identity{pair: pair, pem: certPEM, leaf: pair.Leaf}, nil
}

// newIdentity makes a self-signed ECDSA P-256 certificate for localhost,
// 127.0.0.1, ::1 and host, valid with no end (RFC 5280's 9999-12-31: it is
// pinned, not checked against a CA), and saves it and its key.
func newIdentity(keyPath, certPath, host string) (*identity, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "keygate embedded NATS server"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true, // its own root, for tools that verify against a CA file
		MaxPathLenZero:        true,
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	if ip := net.ParseIP(host); ip != nil && !ip.IsUnspecified() && !ip.IsLoopback() {
		tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
	} else if ip == nil && host != "" && host != "localhost" {
		tmpl.DNSNames = append(tmpl.DNSNames, host)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8})
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	// The certificate last: a key without it is made anew next time.
	if err := natstoken.WriteFile(keyPath, keyPEM); err != nil {
		return nil, err
	}
	if err := natstoken.WriteFile(certPath, certPEM); err != nil {
		return nil, err
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	return &identity{pair: pair, pem: certPEM, leaf: pair.Leaf, fresh: true}, nil
}

// serverTLS is the embedded server's TLS configuration.
func (id *identity) serverTLS() *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{id.pair}, MinVersion: tls.VersionTLS13}
}

// errNotPinned: the server's certificate is not the pinned one.
var errNotPinned = errors.New("the server's certificate is not the one pinned for it")

// pinnedTLS trusts exactly the certificate pin returns, read at every
// handshake, and nothing else: no CA, no host name. Go's handshake still
// checks the server's signature with that certificate's key, so only the
// holder of the embedded server's private key gets through.
func pinnedTLS(pin func() (*x509.Certificate, error)) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		// The chain and name checks are replaced by VerifyConnection's
		// exact match; this does not skip the signature check.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			want, err := pin()
			if err != nil {
				return err
			}
			if len(cs.PeerCertificates) == 0 || !bytes.Equal(cs.PeerCertificates[0].Raw, want.Raw) {
				return errNotPinned
			}
			return nil
		},
	}
}

// readPin reads the certificate pinned in the PEM file p.
func readPin(p string) (*x509.Certificate, error) {
	b, err := natstoken.ReadFile(p)
	if err != nil {
		return nil, err
	}
	if b == nil {
		return nil, fmt.Errorf("%s: no such file", p)
	}
	return parsePin(p, b)
}

func parsePin(p string, b []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("%s: no PEM certificate", p)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	return c, nil
}
