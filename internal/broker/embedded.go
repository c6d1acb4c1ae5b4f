package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/keygate/keygate/internal/logs"
	"github.com/keygate/keygate/internal/natstoken"
)

// embedded is a running in-process server and what it holds.
type embedded struct {
	server *server.Server
	token  string
	id     *identity
	lock   *os.File // the data directory, locked
}

// close stops the server and then releases the data directory.
func (e *embedded) close() {
	e.server.Shutdown()
	e.server.WaitForShutdown()
	e.lock.Close() // closing the last descriptor releases the lock
}

// startEmbedded starts the in-process server on o.Listen. It holds the
// data directory's lock for its life, serves TLS only, handshake first,
// with the key pair kept in the data directory, and requires a token:
// o.Token if set, else the one saved for its port (a new one with a new
// key pair). It saves the certificate, and a token it chose, for the
// clients of this machine.
func startEmbedded(o Options) (_ *embedded, err error) {
	host, port, err := splitListen(o.Listen)
	if err != nil {
		return nil, err
	}
	if err := checkWritable(o.DataDir); err != nil {
		return nil, fmt.Errorf("nats.data_dir: %w", err)
	}
	e := &embedded{}
	if e.lock, err = lockDir(o.DataDir); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			e.lock.Close()
		}
	}()
	if port > 0 { // fail fast on a busy address, before the server tries for seconds
		l, err := net.Listen("tcp", o.Listen)
		if err != nil {
			return nil, fmt.Errorf("nats.listen: %w", err)
		}
		l.Close()
	}
	if e.id, err = loadIdentity(o.DataDir, host); err != nil {
		return nil, fmt.Errorf("nats.data_dir: %w", err)
	}
	if e.token, err = o.serverToken(port, e.id.fresh); err != nil {
		return nil, err
	}
	if e.server, err = o.newServer(host, port, e.token, e.id); err != nil {
		return nil, err
	}
	if err := e.publish(o); err != nil {
		e.server.Shutdown()
		return nil, err
	}
	return e, nil
}

func splitListen(listen string) (string, int, error) {
	host, portStr, err := net.SplitHostPort(listen)
	if err != nil {
		return "", 0, fmt.Errorf("nats.listen %q: %w", listen, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return "", 0, fmt.Errorf("nats.listen %q: bad port", listen)
	}
	return host, port, nil
}

// serverToken is o.Token, else the token saved for port unless the key
// pair is new, else a new one.
func (o Options) serverToken(port int, fresh bool) (string, error) {
	if o.Token != "" {
		return o.Token, nil
	}
	if port > 0 && !fresh {
		token, err := natstoken.Read(o.TokenDir, port)
		if err != nil || token != "" {
			return token, err
		}
	}
	return natstoken.New(), nil
}

func (o Options) newServer(host string, port int, token string, id *identity) (*server.Server, error) {
	log := o.logger().With("component", "nats-server")
	debug := log.Enabled(context.Background(), slog.LevelDebug)
	s, err := server.NewServer(&server.Options{
		ServerName:        "keygate",
		Host:              host,
		Port:              port,
		JetStream:         true,
		StoreDir:          o.DataDir,
		Authorization:     token,
		TLSConfig:         id.serverTLS(),
		TLSHandshakeFirst: true,
		NoSigs:            true,
		Debug:             debug,
	})
	if err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	s.SetLoggerV2(serverLog{logs.NATSServer{Log: log}}, debug, false, false)
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		return nil, fmt.Errorf("embedded nats did not start on %s", o.Listen)
	}
	return s, nil
}

// serverLog is the embedded server's log, with the warning it gives at
// every start that clients without TLS handshake first cannot connect (so
// configured on purpose) at debug level.
type serverLog struct{ logs.NATSServer }

func (l serverLog) Warnf(format string, v ...any) {
	if strings.Contains(format, "TLS Handshake First") {
		l.Debugf(format, v...)
		return
	}
	l.NATSServer.Warnf(format, v...)
}

// publish saves the certificate, and the token unless it is o.Token, where
// the clients of this machine look for the server's port.
func (e *embedded) publish(o Options) error {
	port := e.server.Addr().(*net.TCPAddr).Port
	if err := natstoken.WriteCert(o.TokenDir, port, e.id.pem); err != nil {
		return fmt.Errorf("%w (set nats.token_dir)", err)
	}
	if o.Token == "" {
		if err := natstoken.Write(o.TokenDir, port, e.token); err != nil {
			return fmt.Errorf("%w (set nats.token or nats.token_dir)", err)
		}
	}
	return nil
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

// lockDir takes an exclusive flock on dir, held until the returned file
// is closed or the process ends (the kernel releases it then, even after
// kill -9), so that one keygate at a time serves a data directory.
func lockDir(dir string) (*os.File, error) {
	shown := dir
	if abs, err := filepath.Abs(dir); err == nil {
		shown = abs
	}
	f, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("nats.data_dir: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("nats.data_dir %s: another keygate serve is using this data directory (it holds its lock)", shown)
		}
		return nil, fmt.Errorf("nats.data_dir %s: lock: %w", shown, err)
	}
	return f, nil
}
