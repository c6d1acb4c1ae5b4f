package natstest

import (
	"bytes"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Squatter is a plain TCP listener on a NATS server's port, as another
// user's process could hold it while the server is away: it accepts every
// connection, says nothing, and records what each client sends.
type Squatter struct {
	l     net.Listener
	mu    sync.Mutex
	conns [][]byte // what each connection sent, in accept order
	wg    sync.WaitGroup
}

// Squat listens on addr until Close or the end of the test. Each
// connection is read until the client closes it or for a second.
func Squat(t testing.TB, addr string) *Squatter {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("squat %s: %v", addr, err)
	}
	s := &Squatter{l: l}
	t.Cleanup(s.Close)
	s.wg.Add(1)
	go s.accept()
	return s
}

func (s *Squatter) accept() {
	defer s.wg.Done()
	for {
		c, err := s.l.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		i := len(s.conns)
		s.conns = append(s.conns, nil)
		s.mu.Unlock()
		s.wg.Add(1)
		go s.read(c, i)
	}
}

func (s *Squatter) read(c net.Conn, i int) {
	defer s.wg.Done()
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(time.Second))
	buf := make([]byte, 4096)
	for {
		n, err := c.Read(buf)
		s.mu.Lock()
		s.conns[i] = append(s.conns[i], buf[:n]...)
		s.mu.Unlock()
		if err != nil {
			return
		}
	}
}

// Conns is how many connections were accepted so far.
func (s *Squatter) Conns() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// Received is what each connection has sent so far.
func (s *Squatter) Received() [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([][]byte, len(s.conns))
	for i, b := range s.conns {
		out[i] = bytes.Clone(b)
	}
	return out
}

// Close stops listening and waits for the connections to end; it may be
// called again.
func (s *Squatter) Close() {
	s.l.Close()
	s.wg.Wait()
}

// Tokens is a nats-server authenticator that lets every client in and
// records the token each sent: set it as server.Options'
// CustomClientAuthentication to see what a rogue server would learn.
type Tokens struct {
	mu   sync.Mutex
	seen []string
}

// Check records c's token and lets it in.
func (r *Tokens) Check(c server.ClientAuthentication) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seen = append(r.seen, c.GetOpts().Token)
	return true
}

// Seen is every client's token, "" for none, in the order they came.
func (r *Tokens) Seen() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.seen...)
}
