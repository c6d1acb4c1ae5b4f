package natstest

import (
	"net"
	"sync"
	"testing"
	"time"
)

// Proxy forwards loopback TCP to a NATS server, so that a test can stall
// or cut one client's link while the others still reach the server.
type Proxy struct {
	l      net.Listener
	target string

	mu    sync.Mutex
	cut   bool
	open  chan struct{} // closed while traffic flows; a fresh one while held
	delay time.Duration // added to every chunk forwarded
	conns []net.Conn
}

// NewProxy forwards to target (host:port) until the test ends.
func NewProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{l: l, target: target, open: make(chan struct{})}
	close(p.open)
	t.Cleanup(func() { l.Close(); p.Release(); p.Cut(true) })
	go p.accept()
	return p
}

// URL is the proxy's nats:// URL.
func (p *Proxy) URL() string { return "nats://" + p.l.Addr().String() }

func (p *Proxy) accept() {
	for {
		c, err := p.l.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.cut {
			p.mu.Unlock()
			c.Close()
			continue
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			p.mu.Unlock()
			c.Close()
			continue
		}
		p.conns = append(p.conns, c, up)
		p.mu.Unlock()
		go p.pipe(up, c)
		go p.pipe(c, up)
	}
}

// pipe copies from src to dst: each chunk waits while the proxy is held,
// and is written its delay after it was read, without holding up the
// chunks read after it (a slower link, not a narrower one).
func (p *Proxy) pipe(dst, src net.Conn) {
	type chunk struct {
		b  []byte
		at time.Time
	}
	q := make(chan chunk, 1024)
	go func() {
		defer dst.Close()
		for c := range q {
			time.Sleep(time.Until(c.at))
			p.mu.Lock()
			open := p.open
			p.mu.Unlock()
			<-open
			if _, err := dst.Write(c.b); err != nil {
				for range q { // drain: the reader ends on its own
				}
				return
			}
		}
	}()
	defer close(q)
	for {
		buf := make([]byte, 32<<10)
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			delay := p.delay
			p.mu.Unlock()
			q <- chunk{buf[:n], time.Now().Add(delay)}
		}
		if err != nil {
			return
		}
	}
}

// Hold stalls the link: bytes wait in the proxy until Release, and the
// connection stays up.
func (p *Proxy) Hold() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.open:
		p.open = make(chan struct{})
	default:
	}
}

// Slow delays every chunk forwarded by d from now on (0: none), as a
// link with that much more latency would.
func (p *Proxy) Slow(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.delay = d
}

// Release lets held bytes through.
func (p *Proxy) Release() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.open:
	default:
		close(p.open)
	}
}

// Cut closes every open connection and refuses new ones while cut.
func (p *Proxy) Cut(cut bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = cut
	if cut {
		for _, c := range p.conns {
			c.Close()
		}
		p.conns = nil
	}
}
