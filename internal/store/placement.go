package store

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// errNoPeers is JetStream's answer to a replicated bucket or stream it
// cannot place yet (nats-server's JSClusterNoPeersErrF, "no suitable peers
// for placement"). A cluster's meta leader places only on servers it has
// heard from, so a leader newly elected, or one a server's stats reached
// late, refuses for a moment while every server is up.
const errNoPeers jetstream.ErrorCode = 10005

const (
	// placementWait is how long a bucket or stream that cannot be placed
	// is tried again before its error ends the start: longer than a
	// cluster's meta election and the stats each server sends once it has
	// a leader, short enough that a cluster missing servers for good fails
	// the start with JetStream's own error rather than hanging it.
	placementWait = 10 * time.Second
	// placementPause is the wait between two tries at placing.
	placementPause = 100 * time.Millisecond
)

// retryAfter says whether a failed try at opening or creating a bucket or
// stream is tried again, and after how long: at once when the try's own
// attempt timed out (a JetStream API request lost while a leader moved),
// after placementPause when the cluster could not place it yet and now is
// before until. err is the try's error; nil is never retried.
func retryAfter(err error, now, until time.Time) (time.Duration, bool) {
	var api *jetstream.APIError
	switch {
	case err == nil:
		return 0, false
	case errors.Is(err, context.DeadlineExceeded):
		return 0, true
	case errors.As(err, &api) && api.ErrorCode == errNoPeers && now.Before(until):
		return placementPause, true
	}
	return 0, false
}

// retrying runs try until it succeeds or retryAfter gives up on its error,
// or ctx ends.
func retrying(ctx context.Context, try func() error) error {
	until := time.Now().Add(placementWait)
	for {
		err := try()
		wait, ok := retryAfter(err, time.Now(), until)
		if !ok || ctx.Err() != nil {
			return err
		}
		if wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return err
			case <-t.C:
			}
		}
	}
}
