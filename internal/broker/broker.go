// Package broker connects keygate to NATS: either an embedded in-process
// nats-server with JetStream (the one-command default) or an existing NATS
// cluster given by URL.
package broker

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/keygate/keygate/internal/logs"
	"github.com/keygate/keygate/internal/natstoken"
)

// Options say where NATS is and how to authenticate to it.
type Options struct {
	URL       string // empty: run an embedded server
	Listen    string // embedded server's client address
	DataDir   string // embedded server's JetStream store
	CredsFile string
	NKeyFile  string
	User      string
	Password  string
	Token     string
	CAFile    string
	CertFile  string
	KeyFile   string
	// TokenDir holds the embedded server's token file; "" for
	// natstoken.DefaultDir. A client of a loopback URL without
	// credentials of its own reads the token there.
	TokenDir string
	Name     string
	Logger   *slog.Logger
	// OnState, if set, is called with true on (re)connect and false on
	// disconnect.
	OnState func(connected bool)
}

// Conn is an open NATS connection and, when embedded, its server.
type Conn struct {
	NC     *nats.Conn
	JS     jetstream.JetStream
	server *server.Server
}

// Connect starts the embedded server if no URL is given, then connects.
func Connect(o Options) (*Conn, error) {
	c := &Conn{}
	opts, err := o.natsOptions()
	if err != nil {
		return nil, err
	}
	url := o.URL
	switch {
	case url == "":
		s, token, err := startEmbedded(o)
		if err != nil {
			return nil, err
		}
		c.server = s
		url = s.ClientURL()
		opts = append(opts, nats.InProcessServer(s))
		if o.Token == "" {
			opts = append(opts, nats.Token(token))
		}
	case !o.hasCredentials():
		token, err := natstoken.ForURLs(o.TokenDir, url)
		if err != nil {
			return nil, err
		}
		if token != "" {
			opts = append(opts, nats.Token(token))
		}
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("connect to nats: %w", err)
	}
	c.NC = nc
	if c.JS, err = jetstream.New(nc); err != nil {
		c.Close()
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	return c, nil
}

// Close drains the connection and stops the embedded server, if any.
func (c *Conn) Close() {
	if c.NC != nil {
		c.NC.Close()
	}
	if c.server != nil {
		c.server.Shutdown()
		c.server.WaitForShutdown()
	}
}

// ServerAddr is the embedded server's client address; nil if there is none.
func (c *Conn) ServerAddr() net.Addr {
	if c.server == nil {
		return nil
	}
	return c.server.Addr()
}

// Embedded reports whether keygate runs its own NATS server.
func (c *Conn) Embedded() bool { return c.server != nil }

func (o Options) natsOptions() ([]nats.Option, error) {
	opts := []nats.Option{
		nats.Name(o.Name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.RetryOnFailedConnect(false),
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
	log := o.logger()
	state := o.OnState
	if state == nil {
		state = func(bool) {}
	}
	return append(opts,
		nats.DisconnectErrHandler(func(nc *nats.Conn, err error) {
			state(false)
			if !nc.IsClosed() { // not keygate closing the connection
				log.Warn("nats disconnected", "err", err)
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
	), nil
}

// checkWritable makes dir if needed and checks that a file can be
// written in it: the server would otherwise fail only after seconds.
func checkWritable(dir string) error {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".keygate-write-check-*")
	if err != nil {
		return err
	}
	f.Close()
	return os.Remove(f.Name())
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

// startEmbedded starts the in-process server on o.Listen, requiring a
// token: o.Token if set, else the one saved for its port (or a new one),
// saved for the clients of this machine. It returns the server and token.
func startEmbedded(o Options) (*server.Server, string, error) {
	host, portStr, err := net.SplitHostPort(o.Listen)
	if err != nil {
		return nil, "", fmt.Errorf("nats.listen %q: %w", o.Listen, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, "", fmt.Errorf("nats.listen %q: bad port", o.Listen)
	}
	if port > 0 { // fail fast on a busy address, before the server tries for seconds
		l, err := net.Listen("tcp", o.Listen)
		if err != nil {
			return nil, "", fmt.Errorf("nats.listen: %w", err)
		}
		l.Close()
	}
	if err := checkWritable(o.DataDir); err != nil {
		return nil, "", fmt.Errorf("nats.data_dir: %w", err)
	}
	token := o.Token
	if token == "" && port > 0 {
		if token, err = natstoken.Read(o.TokenDir, port); err != nil {
			return nil, "", err
		}
	}
	if token == "" {
		token = natstoken.New()
	}
	log := o.logger().With("component", "nats-server")
	debug := log.Enabled(context.Background(), slog.LevelDebug)
	s, err := server.NewServer(&server.Options{
		ServerName:    "keygate",
		Host:          host,
		Port:          port,
		JetStream:     true,
		StoreDir:      o.DataDir,
		Authorization: token,
		NoSigs:        true,
		Debug:         debug,
	})
	if err != nil {
		return nil, "", fmt.Errorf("embedded nats: %w", err)
	}
	s.SetLoggerV2(logs.NATSServer{Log: log}, debug, false, false)
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		return nil, "", fmt.Errorf("embedded nats did not start on %s", o.Listen)
	}
	if o.Token == "" {
		if err := natstoken.Write(o.TokenDir, s.Addr().(*net.TCPAddr).Port, token); err != nil {
			s.Shutdown()
			return nil, "", fmt.Errorf("%w (set nats.token or nats.token_dir)", err)
		}
	}
	return s, token, nil
}
