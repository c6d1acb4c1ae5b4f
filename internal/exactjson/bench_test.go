package exactjson

import "testing"

func BenchmarkUniqueEntry(b *testing.B) {
	e := []byte(`{"v":1,"windows":[{"start_ns":1764000000000000000,"len_ns":60000000000,"limit":600,"granted":250}],"done_ns":1763999940000000000}`)
	b.ReportAllocs()
	for b.Loop() {
		_ = Unique(e)
	}
}

func BenchmarkUniqueAccount(b *testing.B) {
	a := []byte(`{"id":"acme","balance":100000,"balance_nanos":123456789,"currency":"MXN","updated_at":"2026-12-07T23:00:00.123456789Z","holds":{"kgABCDEF12":{"nanos":150000000000,"at":"2026-12-07T23:00:00.123456789Z"},"kgXYZ":{"nanos":1,"at":"2026-12-07T23:00:00Z"}}}`)
	b.ReportAllocs()
	for b.Loop() {
		_ = Unique(a)
	}
}
