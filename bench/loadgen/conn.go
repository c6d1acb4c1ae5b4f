package main

import (
	"context"
	"net"
	"runtime"
	"sync"
)

// envoyConn is a client connection that writes as Envoy's do. Envoy's
// ConnectionImpl::write moves the bytes into the connection's write buffer
// and activates its write event; the event loop writes the buffer on its
// next turn, so the frames of every check one turn produced leave in one
// system call. gRPC's Go client writes each message over 1,000 bytes at
// once instead: a system call per check with a 4 KB body, for the
// generator and for the server's reads, which Envoy does not cost either.
type envoyConn struct {
	net.Conn
	wake      chan struct{}
	done      chan struct{}
	closeOnce sync.Once

	mu     sync.Mutex
	queued []byte
	err    error // the last write's; every later Write returns it
}

// dialEnvoy connects to addr over TCP, writing as Envoy does.
func dialEnvoy(ctx context.Context, addr string) (net.Conn, error) {
	c, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	ec := &envoyConn{Conn: c, wake: make(chan struct{}, 1), done: make(chan struct{})}
	go ec.writeLoop()
	return ec, nil
}

// Write queues p for the write loop.
func (c *envoyConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	err := c.err
	if err == nil {
		c.queued = append(c.queued, p...)
	}
	c.mu.Unlock()
	if err != nil {
		return 0, err
	}
	select {
	case c.wake <- struct{}{}:
	default:
	}
	return len(p), nil
}

// writeLoop is the event loop's write: once woken, it lets the goroutines
// that are ready run (the rest of the turn), then writes everything they
// queued at once.
func (c *envoyConn) writeLoop() {
	var out []byte
	for {
		select {
		case <-c.done:
			return
		case <-c.wake:
		}
		runtime.Gosched()
		c.mu.Lock()
		out, c.queued = c.queued, out[:0]
		c.mu.Unlock()
		if len(out) == 0 {
			continue
		}
		if _, err := c.Conn.Write(out); err != nil {
			c.mu.Lock()
			c.err = err
			c.mu.Unlock()
			return
		}
	}
}

// Close stops the write loop and closes the connection.
func (c *envoyConn) Close() error {
	c.closeOnce.Do(func() { close(c.done) })
	return c.Conn.Close()
}
