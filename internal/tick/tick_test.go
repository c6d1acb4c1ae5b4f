package tick_test

import (
	"context"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/tick"
)

// TestEvery: f runs repeatedly, and Every returns once ctx ends.
func TestEvery(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	n := 0
	tick.Every(ctx, time.Millisecond, func() {
		if n++; n == 3 {
			cancel()
		}
	})
	if n < 3 {
		t.Fatalf("f ran %d times, want 3 or more", n)
	}
}
