package shrink_test

import (
	"testing"

	"github.com/keygate/keygate/internal/shrink"
)

func TestMap(t *testing.T) {
	m, peak := map[int]int{}, 0
	for i := range 4096 {
		m[i] = i
	}
	m = shrink.Map(m, &peak)
	if peak != 4096 {
		t.Fatalf("peak %d after growth", peak)
	}
	for i := range 3073 { // 1,023 left: under a quarter
		delete(m, i)
	}
	before := m
	if m = shrink.Map(m, &peak); len(m) != 1023 || peak != 1023 || m[4095] != 4095 {
		t.Fatalf("after shrinking: %d entries, peak %d", len(m), peak)
	}
	m[0] = -1
	if before[0] == -1 {
		t.Fatal("not a copy")
	}
	small, p := map[int]int{1: 1}, 0
	if shrink.Map(small, &p)[1] != 1 || p != 1 {
		t.Fatal("a small map changed")
	}
}
