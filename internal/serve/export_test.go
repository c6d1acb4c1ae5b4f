package serve

import (
	"testing"
	"time"

	"github.com/keygate/keygate/events"
)

// SetWatchTiming makes the change streams of keygates started in t send
// heartbeats every heartbeat and count as stuck after stuckAfter of
// silence, until t ends. Tests of this package do not run in parallel.
func SetWatchTiming(t testing.TB, heartbeat, stuckAfter time.Duration) {
	old := watchTiming
	watchTiming = events.Options{Heartbeat: heartbeat, StuckAfter: stuckAfter, Interval: heartbeat / 5}
	t.Cleanup(func() { watchTiming = old })
}
