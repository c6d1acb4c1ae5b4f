// Package tick runs a function every interval until a context ends.
package tick

import (
	"context"
	"time"
)

// Every calls f every interval, the first time one interval from now,
// until ctx ends; it returns when ctx ends.
func Every(ctx context.Context, interval time.Duration, f func()) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			f()
		}
	}
}
