package apikey

import "testing"

func BenchmarkCheck(b *testing.B) {
	f := DefaultFormat()
	key, _ := f.Mint(LivePrefix)
	b.ReportAllocs()
	for b.Loop() {
		if f.Check(key) != nil {
			b.Fatal("valid key rejected")
		}
	}
}

func BenchmarkHash(b *testing.B) {
	key, _ := DefaultFormat().Mint(LivePrefix)
	b.ReportAllocs()
	for b.Loop() {
		_ = Hash(key)
	}
}
