// Package broker connects keygate to NATS: either an embedded in-process
// nats-server with JetStream (the one-command default) or an existing NATS
// cluster given by URL.
package broker

import (
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
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
	Name      string
	Logger    *slog.Logger
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
	if url == "" {
		s, err := startEmbedded(o)
		if err != nil {
			return nil, err
		}
		c.server = s
		url = s.ClientURL()
		opts = append(opts, nats.InProcessServer(s))
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
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
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
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("nats reconnected", "url", nc.ConnectedUrlRedacted())
			state(true)
		}),
	), nil
}

func startEmbedded(o Options) (*server.Server, error) {
	host, portStr, err := net.SplitHostPort(o.Listen)
	if err != nil {
		return nil, fmt.Errorf("nats listen address %q: %w", o.Listen, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("nats listen address %q: bad port", o.Listen)
	}
	s, err := server.NewServer(&server.Options{
		ServerName: "keygate",
		Host:       host,
		Port:       port,
		JetStream:  true,
		StoreDir:   o.DataDir,
		NoSigs:     true,
		NoLog:      true,
	})
	if err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		return nil, fmt.Errorf("embedded nats did not start on %s", o.Listen)
	}
	return s, nil
}
