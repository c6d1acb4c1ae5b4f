package openai

import (
	"encoding/binary"
	"math/bits"
	"math/rand/v2"
	"testing"
)

// TestSpecial: the lowest byte special flags is the first quote,
// backslash, control character or non-ASCII byte of the word.
func TestSpecial(t *testing.T) {
	first := func(w [8]byte) int {
		for i, c := range w {
			if c < 0x20 || c >= 0x80 || c == '"' || c == '\\' {
				return i
			}
		}
		return 8
	}
	check := func(w [8]byte) {
		got := 8
		if m := special(binary.LittleEndian.Uint64(w[:])); m != 0 {
			got = bits.TrailingZeros64(m) >> 3
		}
		if want := first(w); got != want {
			t.Fatalf("special(%q): first at %d; want %d", w, got, want)
		}
	}
	for c := range 256 {
		for at := range 8 {
			w := [8]byte{'a', 'a', 'a', 'a', 'a', 'a', 'a', 'a'}
			w[at] = byte(c)
			check(w)
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := []byte{0, 0x1f, 0x20, 0x21, '"', 0x23, '[', '\\', ']', 0x7e, 0x7f, 0x80, 0x9f, 0xa0, 0xc3, 0xff}
	for range 1_000_000 {
		var w [8]byte
		for i := range w {
			if rng.IntN(3) == 0 {
				w[i] = alphabet[rng.IntN(len(alphabet))]
			} else {
				w[i] = byte(rng.IntN(256))
			}
		}
		check(w)
	}
}
