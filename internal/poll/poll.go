// Package poll waits, in tests, for a condition to hold: tests wait on
// conditions, not on sleeps.
package poll

import (
	"testing"
	"time"
)

// Until polls cond every millisecond until it holds, failing t with what
// was awaited if it does not within d.
func Until(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not %s after %s", what, d)
		}
		time.Sleep(time.Millisecond)
	}
}
