// Package keyfilter knows, in about 1.5 bytes per key, which key hashes
// may exist in the key store: a Bloom filter of every key hash, loaded at
// start from a snapshot kept in NATS and kept current by the keys
// bucket's change stream. A key it has never seen cannot exist, so a
// check with it is denied without a store lookup; a key it may have seen
// (all that exist, and about 0.3 % of those that do not) is looked up as
// before. It never forgets a key, so a revoked or deleted one is looked up
// and denied by its record.
package keyfilter

import (
	"encoding/binary"
	"errors"
	"math/bits"
	"strconv"
	"sync"
	"sync/atomic"
)

// Filter parameters: 12 bits and 8 probes per key give about 0.3 % false
// positives per segment.
const (
	bitsPerKey = 12
	probes     = 8
	minSegment = 1 << 16 // keys: the smallest segment
)

// Bloom is a Bloom filter that grows by segments: a full segment stays as
// it is and a new one, a quarter of the keys so far, takes the next keys.
// Each segment adds its false positives, so once it has grown a second
// time it reports Crowded, and its owner rebuilds it at the new size.
// Reads and adds may run concurrently.
type Bloom struct {
	mu   sync.Mutex // serialises adds that grow the filter
	segs atomic.Pointer[[]*segment]
	keys atomic.Int64
}

type segment struct {
	words []uint64
	m     uint64 // bits
	cap   int64  // keys it is sized for
	n     atomic.Int64
}

// NewBloom returns an empty filter sized for n keys.
func NewBloom(n int64) *Bloom {
	b := &Bloom{}
	segs := []*segment{newSegment(max(n, minSegment))}
	b.segs.Store(&segs)
	return b
}

func newSegment(capacity int64) *segment {
	m := uint64(capacity) * bitsPerKey
	m = (m + 63) &^ 63
	return &segment{words: make([]uint64, m/64), m: m, cap: capacity}
}

// probe returns the two hashes a key hash's probes derive from: the key
// hash is SHA-256 hex, already uniform.
func probe(hash string) (h1, h2 uint64, ok bool) {
	if len(hash) < 32 {
		return 0, 0, false
	}
	a, err1 := strconv.ParseUint(hash[:16], 16, 64)
	b, err2 := strconv.ParseUint(hash[16:32], 16, 64)
	return a, b | 1, err1 == nil && err2 == nil
}

// MayContain reports whether hash may have been added. A malformed hash
// may always have been: the filter never turns a key away on a doubt.
func (b *Bloom) MayContain(hash string) bool {
	h1, h2, ok := probe(hash)
	if !ok {
		return true
	}
	for _, s := range *b.segs.Load() {
		if s.contains(h1, h2) {
			return true
		}
	}
	return false
}

func (s *segment) contains(h1, h2 uint64) bool {
	for i := range uint64(probes) {
		bit := (h1 + i*h2) % s.m
		if atomic.LoadUint64(&s.words[bit/64])&(1<<(bit%64)) == 0 {
			return false
		}
	}
	return true
}

// Add adds hash.
func (b *Bloom) Add(hash string) {
	h1, h2, ok := probe(hash)
	if !ok {
		return
	}
	s := b.last()
	if s.n.Load() >= s.cap {
		s = b.grow()
	}
	for i := range uint64(probes) {
		bit := (h1 + i*h2) % s.m
		atomic.OrUint64(&s.words[bit/64], 1<<(bit%64))
	}
	s.n.Add(1)
	b.keys.Add(1)
}

func (b *Bloom) last() *segment {
	segs := *b.segs.Load()
	return segs[len(segs)-1]
}

// grow adds a segment if the last one is full, and returns the last.
func (b *Bloom) grow() *segment {
	b.mu.Lock()
	defer b.mu.Unlock()
	segs := *b.segs.Load()
	if s := segs[len(segs)-1]; s.n.Load() < s.cap {
		return s
	}
	next := append(segs[:len(segs):len(segs)], newSegment(max(b.keys.Load()/4, minSegment)))
	b.segs.Store(&next)
	return next[len(next)-1]
}

// Crowded reports whether the filter has grown past one extra segment:
// a filter rebuilt for all its keys would be smaller and more exact.
func (b *Bloom) Crowded() bool { return len(*b.segs.Load()) > 2 }

// Keys is how many keys have been added.
func (b *Bloom) Keys() int64 { return b.keys.Load() }

// Bytes is the memory the filter's bits take.
func (b *Bloom) Bytes() int64 {
	var n int64
	for _, s := range *b.segs.Load() {
		n += int64(len(s.words)) * 8
	}
	return n
}

// magic starts an encoded filter, with its format version.
var magic = [4]byte{'K', 'G', 'F', '1'}

// Encode writes the filter: magic, then per segment its bits, capacity,
// key count and words, little-endian.
func (b *Bloom) Encode() []byte {
	segs := *b.segs.Load()
	out := append([]byte(nil), magic[:]...)
	out = binary.LittleEndian.AppendUint32(out, uint32(len(segs)))
	for _, s := range segs {
		out = binary.LittleEndian.AppendUint64(out, s.m)
		out = binary.LittleEndian.AppendUint64(out, uint64(s.cap))
		out = binary.LittleEndian.AppendUint64(out, uint64(s.n.Load()))
		for i := range s.words {
			out = binary.LittleEndian.AppendUint64(out, atomic.LoadUint64(&s.words[i]))
		}
	}
	return out
}

var errFormat = errors.New("not a keygate key filter")

// Decode reads a filter Encode wrote.
func Decode(data []byte) (*Bloom, error) {
	if len(data) < 8 || [4]byte(data[:4]) != magic {
		return nil, errFormat
	}
	n := binary.LittleEndian.Uint32(data[4:])
	data = data[8:]
	b := &Bloom{}
	var segs []*segment
	for range n {
		if len(data) < 24 {
			return nil, errFormat
		}
		m, capacity, keys := binary.LittleEndian.Uint64(data), binary.LittleEndian.Uint64(data[8:]), binary.LittleEndian.Uint64(data[16:])
		data = data[24:]
		hi, words := bits.Mul64(m/64, 8)
		if capacity == 0 || capacity > 1<<40 || m != (capacity*bitsPerKey+63)&^63 || hi != 0 || uint64(len(data)) < words || keys > capacity {
			return nil, errFormat
		}
		s := &segment{words: make([]uint64, m/64), m: m, cap: int64(capacity)}
		for i := range s.words {
			s.words[i] = binary.LittleEndian.Uint64(data[8*i:])
		}
		data = data[words:]
		s.n.Store(int64(keys))
		b.keys.Add(int64(keys))
		segs = append(segs, s)
	}
	if len(segs) == 0 || len(data) != 0 {
		return nil, errFormat
	}
	b.segs.Store(&segs)
	return b, nil
}
