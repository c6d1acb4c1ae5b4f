package fleetclock

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/keygate/keygate/internal/natstest"
)

// TestMeasure: a keygate whose clock is 5 s off reads the server's time
// to within a few milliseconds, and says so in its log.
func TestMeasure(t *testing.T) {
	ns := natstest.Run(t)
	_, js := natstest.Connect(t, ns)
	ctx := natstest.Context(t)
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "limits"})
	if err != nil {
		t.Fatal(err)
	}
	for _, skew := range []time.Duration{5 * time.Second, -5 * time.Second, 0} {
		var logs bytes.Buffer
		c := New(kv, func() time.Time { return time.Now().Add(skew) }, slog.New(slog.NewTextHandler(&logs, nil)))
		if err := c.Measure(ctx); err != nil {
			t.Fatal(err)
		}
		if d := time.Until(c.Now()); d < -50*time.Millisecond || d > 50*time.Millisecond {
			t.Errorf("clock %v off: the fleet's clock reads %v from the server's", skew, d)
		}
		if warned := strings.Contains(logs.String(), "clock is off"); warned != (skew != 0) {
			t.Errorf("clock %v off: warned %v", skew, warned)
		}
	}
}
