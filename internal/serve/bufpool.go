package serve

import (
	"sync"

	"google.golang.org/grpc/mem"
)

// readBuffers is gRPC's tiered buffer pool without its zeroing: gRPC reads
// a message's bytes into a buffer of exactly their length and never
// reads past it, so clearing a 16 KiB buffer for a 4 KiB request body,
// as the default pool does on every Get, is work for nothing.
type readBuffers struct {
	tiers [len(bufferTiers)]sync.Pool
}

// bufferTiers are the pooled capacities, as gRPC's default pool's.
var bufferTiers = [...]int{1 << 8, 1 << 12, 1 << 14, 1 << 15, 1 << 20}

var _ mem.BufferPool = (*readBuffers)(nil)

// Get returns a buffer of length n.
func (p *readBuffers) Get(n int) *[]byte {
	for i, size := range bufferTiers {
		if n <= size {
			if b, ok := p.tiers[i].Get().(*[]byte); ok {
				*b = (*b)[:n]
				return b
			}
			b := make([]byte, n, size)
			return &b
		}
	}
	b := make([]byte, n)
	return &b
}

// Put keeps a buffer of one of the tiers' capacities.
func (p *readBuffers) Put(b *[]byte) {
	for i, size := range bufferTiers {
		if cap(*b) == size {
			p.tiers[i].Put(b)
			return
		}
	}
}
