// Package broker connects keygate to NATS: either an embedded in-process
// nats-server with JetStream (the one-command default) or an existing NATS
// cluster given by URL.
//
// The embedded server holds a lock on its data directory while it runs,
// speaks TLS only, handshake first, with a key pair kept in the data
// directory, and requires a token. A client of a loopback URL finds that
// server's certificate and token in the user's token directory, trusts that
// certificate and nothing else, and sends nothing before the handshake has
// proved the server holds its key: whoever holds the port in its place
// learns no token and serves no records. Every connection reconnects for
// as long as it lives, after any number of network, TLS or authorization
// errors.
package broker

import (
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Options say where NATS is and how to authenticate to it.
type Options struct {
	URL       string // empty: run an embedded server
	Listen    string // embedded server's client address
	DataDir   string // embedded server's JetStream store, key pair and lock
	CredsFile string
	NKeyFile  string
	User      string
	Password  string
	Token     string
	CAFile    string
	CertFile  string
	KeyFile   string
	// TokenDir holds the embedded server's token and certificate files;
	// "" for natstoken.DefaultDir. A client of a loopback URL reads them
	// there.
	TokenDir string
	Name     string
	Logger   *slog.Logger
	// OnState, if set, is called with true on (re)connect and false on
	// disconnect and on close.
	OnState func(connected bool)
}

// connectTimeout bounds a connection attempt to the embedded server, TLS
// handshake included: nats.go's 2 s default leaves a loaded machine little
// room for the handshake.
const connectTimeout = 5 * time.Second

// Conn is an open NATS connection and, when embedded, its server.
type Conn struct {
	NC      *nats.Conn
	JS      jetstream.JetStream
	emb     *embedded
	closing atomic.Bool // Close was called
}

// Connect starts the embedded server if no URL is given, then connects.
func Connect(o Options) (*Conn, error) {
	c := &Conn{}
	opts, err := o.natsOptions(c)
	if err != nil {
		return nil, err
	}
	url := o.URL
	var l *local
	if url == "" {
		if c.emb, err = startEmbedded(o); err != nil {
			return nil, err
		}
		url = c.emb.server.ClientURL()
		leaf := c.emb.id.leaf
		opts = append(opts, nats.InProcessServer(c.emb.server), nats.TLSHandshakeFirst(), nats.Timeout(connectTimeout),
			nats.Secure(pinnedTLS(func() (*x509.Certificate, error) { return leaf, nil })))
		if o.Token == "" {
			opts = append(opts, nats.Token(c.emb.token))
		}
	} else {
		if l, err = o.findLocal(url); err != nil {
			return nil, err
		}
		opts = append(opts, l.options()...)
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("connect to nats: %w", l.explain(o, err))
	}
	c.NC = nc
	if c.JS, err = jetstream.New(nc); err != nil {
		c.Close()
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	return c, nil
}

// Close closes the connection and stops the embedded server, if any.
func (c *Conn) Close() {
	c.closing.Store(true)
	if c.NC != nil {
		c.NC.Close()
	}
	if c.emb != nil {
		c.emb.close()
	}
}

// ClosedForGood reports whether the connection has closed by itself (the
// server sent an error nats.go does not reconnect after): it will never
// reconnect, and only a new process gets keygate back to NATS.
func (c *Conn) ClosedForGood() bool {
	return c.NC != nil && c.NC.IsClosed() && !c.closing.Load()
}

// ServerAddr is the embedded server's client address; nil if there is none.
func (c *Conn) ServerAddr() net.Addr {
	if c.emb == nil {
		return nil
	}
	return c.emb.server.Addr()
}

// Embedded reports whether keygate runs its own NATS server.
func (c *Conn) Embedded() bool { return c.emb != nil }

func (o Options) natsOptions(c *Conn) ([]nats.Option, error) {
	opts := []nats.Option{
		nats.Name(o.Name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.RetryOnFailedConnect(false),
		// Without it nats.go gives up for good after the same
		// authorization error twice in a row, as from a server that held
		// the port for a while with another token.
		nats.IgnoreAuthErrorAbort(),
	}
	if o.CredsFile != "" {
		opts = append(opts, nats.UserCredentials(o.CredsFile))
	}
	if o.NKeyFile != "" {
		opt, err := nats.NkeyOptionFromSeed(o.NKeyFile)
		if err != nil {
			return nil, fmt.Errorf("nats nkey file: %w", err)
		}
		opts = append(opts, opt)
	}
	if o.User != "" {
		opts = append(opts, nats.UserInfo(o.User, o.Password))
	}
	if o.Token != "" {
		opts = append(opts, nats.Token(o.Token))
	}
	if o.CAFile != "" {
		opts = append(opts, nats.RootCAs(o.CAFile))
	}
	if o.CertFile != "" {
		opts = append(opts, nats.ClientCert(o.CertFile, o.KeyFile))
	}
	return append(opts, o.handlers(c)...), nil
}

// handlers log the connection's changes and report them to OnState.
func (o Options) handlers(c *Conn) []nats.Option {
	log := o.logger()
	state := o.OnState
	if state == nil {
		state = func(bool) {}
	}
	return []nats.Option{
		nats.DisconnectErrHandler(func(nc *nats.Conn, err error) {
			state(false)
			if !nc.IsClosed() { // not keygate closing the connection
				log.Warn("nats disconnected", "err", err)
			}
		}),
		nats.ClosedHandler(func(nc *nats.Conn) {
			state(false)
			if !c.closing.Load() {
				log.Error("nats connection closed for good: keygate must be restarted", "err", nc.LastError())
			}
		}),
		// Without a handler nats.go writes asynchronous errors to stderr
		// as plain text.
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subject := ""
			if sub != nil {
				subject = sub.Subject
			}
			log.Warn("nats error", "subject", subject, "err", err)
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("nats reconnected", "url", nc.ConnectedUrlRedacted())
			state(true)
		}),
	}
}

func (o Options) logger() *slog.Logger {
	if o.Logger == nil {
		return slog.Default()
	}
	return o.Logger
}

// hasCredentials reports whether any NATS credentials are configured.
func (o Options) hasCredentials() bool {
	return o.CredsFile != "" || o.NKeyFile != "" || o.User != "" || o.Token != ""
}
