package broker

import (
	"crypto/x509"
	"errors"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go"

	"github.com/keygate/keygate/internal/natstoken"
)

// local is what a client of a loopback URL found, in the token directory,
// of keygate's embedded server on that port.
type local struct {
	port      int
	certFile  string // the server's certificate file
	tokenFile string // the server's token file
	pinned    bool   // the certificate is there: TLS handshake first, trusting it alone
	useToken  bool   // the token is there and no other credentials are set
}

// findLocal looks for the files of an embedded server on the first
// loopback port of url; nil if url names none. The files are read again
// at every (re)connect, so a server that made a new key pair and token is
// reached again without a restart.
func (o Options) findLocal(url string) (*local, error) {
	port, ok := natstoken.LoopbackPort(url)
	if !ok {
		return nil, nil
	}
	l := &local{port: port}
	var err error
	if l.certFile, err = natstoken.CertPath(o.TokenDir, port); err != nil {
		if o.hasCredentials() {
			return nil, nil // no token directory: like any NATS server
		}
		return nil, err
	}
	if l.tokenFile, err = natstoken.Path(o.TokenDir, port); err != nil {
		return nil, err
	}
	pem, err := natstoken.ReadFile(l.certFile)
	if err != nil {
		return nil, err
	}
	if pem != nil && o.CAFile == "" && o.CertFile == "" { // else TLS as configured
		if _, err := parsePin(l.certFile, pem); err != nil {
			return nil, fmt.Errorf("embedded NATS server's certificate: %w", err)
		}
		l.pinned = true
	}
	if o.hasCredentials() {
		return l, nil
	}
	token, err := natstoken.Read(o.TokenDir, port)
	if err != nil {
		return nil, err
	}
	if token != "" && !l.pinned {
		return nil, fmt.Errorf("%s holds the embedded NATS server's token but %s no certificate to check the server with: "+
			"start keygate serve on port %d once (it writes both), or remove the token file", l.tokenFile, l.certFile, port)
	}
	l.useToken = token != ""
	return l, nil
}

// options make the connection trust the pinned certificate alone and send
// the token from its file.
func (l *local) options() []nats.Option {
	if l == nil {
		return nil
	}
	var opts []nats.Option
	if l.pinned {
		p := l.certFile
		opts = append(opts, nats.TLSHandshakeFirst(), nats.Timeout(connectTimeout),
			nats.Secure(pinnedTLS(func() (*x509.Certificate, error) { return readPin(p) })))
	}
	if l.useToken {
		p := l.tokenFile
		opts = append(opts, nats.TokenHandler(func() string {
			b, _ := natstoken.ReadFile(p) // a missing file: no token, refused, tried again
			return strings.TrimSpace(string(b))
		}))
	}
	return opts
}

// explain adds to a connection error where the credentials it used came
// from and what to do about them.
func (l *local) explain(o Options, err error) error {
	if errors.Is(err, nats.ErrAuthorization) {
		return o.authError(l, err)
	}
	if l == nil {
		return err
	}
	if l.pinned && (errors.Is(err, nats.ErrTLS) || errors.Is(err, errNotPinned)) {
		return fmt.Errorf("%w: the server on port %d is not keygate's embedded server whose certificate is pinned in %s "+
			"(if that server runs no more and another NATS serves the port, remove the file)", err, l.port, l.certFile)
	}
	if !l.pinned && !errors.Is(err, nats.ErrNoServers) { // something answered
		files := l.certFile
		if !o.hasCredentials() {
			files += " and its token " + l.tokenFile
		}
		return fmt.Errorf("%w (if this is keygate's embedded NATS server: it speaks TLS only, and its certificate is not in %s; "+
			"run as the user that runs keygate serve, or set nats.token_dir to a directory holding them)", err, files)
	}
	return err
}

// authError names the token the server refused and where the right one is.
func (o Options) authError(l *local, err error) error {
	switch {
	case o.Token != "" && l != nil:
		return fmt.Errorf("%w: the server refused the token in KEYGATE_NATS_TOKEN (or nats.token); "+
			"keygate's embedded NATS server keeps its token in %s", err, l.tokenFile)
	case o.Token != "":
		return fmt.Errorf("%w: the server refused the token in KEYGATE_NATS_TOKEN (or nats.token)", err)
	case l != nil && l.useToken:
		return fmt.Errorf("%w: the server refused the token in %s; "+
			"set KEYGATE_NATS_TOKEN (or nats.token) to the server's token", err, l.tokenFile)
	case l != nil && !o.hasCredentials():
		return fmt.Errorf("%w: no token in %s; run as the user that runs keygate serve, "+
			"or set KEYGATE_NATS_TOKEN (or nats.token) to the server's token", err, l.tokenFile)
	}
	return err
}
