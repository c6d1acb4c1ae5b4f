package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"testing"
	"time"
)

// TestEnvoyConnWritesInOrder: what is written arrives whole and in order,
// however the write loop groups it.
func TestEnvoyConnWritesInOrder(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var want bytes.Buffer
	for i := range 2000 {
		want.Write(bytes.Repeat([]byte{byte(i)}, i%5000+1))
	}
	got := make(chan []byte, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			got <- nil
			return
		}
		defer c.Close()
		b, _ := io.ReadAll(io.LimitReader(c, int64(want.Len())))
		got <- b
	}()
	c, err := dialEnvoy(context.Background(), l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i, rest := 0, want.Bytes(); len(rest) > 0; i++ {
		n := i%5000 + 1
		if _, err := c.Write(rest[:n]); err != nil {
			t.Fatal(err)
		}
		rest = rest[n:]
	}
	if b := <-got; !bytes.Equal(b, want.Bytes()) {
		t.Fatalf("read %d bytes, not the %d written in order", len(b), want.Len())
	}
}

// TestEnvoyConnReportsWriteErrors: once the connection is gone, writes
// fail instead of queueing for ever.
func TestEnvoyConnReportsWriteErrors(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		if c, err := l.Accept(); err == nil {
			c.Close()
		}
	}()
	c, err := dialEnvoy(context.Background(), l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	chunk := make([]byte, 64<<10)
	for deadline := time.Now().Add(time.Minute); ; {
		if _, err := c.Write(chunk); err != nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("writes to a closed peer still succeed after a minute")
		}
		time.Sleep(time.Millisecond) // let the write loop send and meet the reset
	}
}
