package keyfilter

import (
	"fmt"
	"testing"

	"github.com/keygate/keygate/internal/apikey"
)

func hashes(n int, salt string) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = apikey.Hash(fmt.Sprintf("%s-%d", salt, i))
	}
	return out
}

// TestBloom: every key added is found; few others are; the filter takes
// about 1.5 bytes a key and survives encoding.
func TestBloom(t *testing.T) {
	const n = 200_000
	in, out := hashes(n, "in"), hashes(n, "out")
	b := NewBloom(n)
	for _, h := range in {
		b.Add(h)
	}
	for _, h := range in {
		if !b.MayContain(h) {
			t.Fatal("an added key is not found")
		}
	}
	fp := 0
	for _, h := range out {
		if b.MayContain(h) {
			fp++
		}
	}
	if rate := float64(fp) / n; rate > 0.005 {
		t.Fatalf("false positives %.3f%%", rate*100)
	}
	if per := float64(b.Bytes()) / n; per > 1.6 {
		t.Fatalf("%.2f bytes a key", per)
	}
	d, err := Decode(b.Encode())
	if err != nil {
		t.Fatal(err)
	}
	for i, h := range in {
		if !d.MayContain(h) || d.MayContain(out[i]) != b.MayContain(out[i]) {
			t.Fatal("the decoded filter answers differently")
		}
	}
	if d.Keys() != n {
		t.Fatalf("decoded %d keys", d.Keys())
	}
}

// TestBloomGrows: a filter past its size grows by segments, still finds
// every key, and says when it should be rebuilt.
func TestBloomGrows(t *testing.T) {
	b := NewBloom(minSegment)
	in := hashes(3*minSegment, "grow")
	for i, h := range in {
		b.Add(h)
		if i == minSegment+minSegment/2 && b.Crowded() {
			t.Fatal("crowded after one extra segment")
		}
	}
	for _, h := range in {
		if !b.MayContain(h) {
			t.Fatal("a key added after growing is not found")
		}
	}
	if !b.Crowded() {
		t.Fatal("not crowded at three times its size")
	}
}

// TestDecodeRefusesGarbage: a damaged snapshot is refused, never read
// as a filter that turns keys away.
func TestDecodeRefusesGarbage(t *testing.T) {
	good := NewBloom(10).Encode()
	for _, b := range [][]byte{nil, []byte("KGF1"), good[:len(good)-1], append(good, 0), []byte("XXXX\x01\x00\x00\x00")} {
		if _, err := Decode(b); err == nil {
			t.Errorf("decoded %d bytes of garbage", len(b))
		}
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(NewBloom(10).Encode())
	f.Fuzz(func(t *testing.T, b []byte) {
		if d, err := Decode(b); err == nil {
			d.MayContain(apikey.Hash("x"))
			d.Add(apikey.Hash("y"))
		}
	})
}
