package store

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/keygate/keygate/internal/natstest"
)

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	noPeers := &jetstream.APIError{Code: 400, ErrorCode: errNoPeers, Description: "no suitable peers for placement, peer offline"}
	for _, c := range []struct {
		name  string
		err   error
		until time.Time
		wait  time.Duration
		again bool
	}{
		{"success", nil, now.Add(time.Second), 0, false},
		{"attempt timed out", fmt.Errorf("open: %w", context.DeadlineExceeded), now, 0, true},
		{"not placed yet", noPeers, now.Add(time.Second), placementPause, true},
		{"not placed, wrapped", fmt.Errorf("create: %w", noPeers), now.Add(time.Nanosecond), placementPause, true},
		{"not placed past the wait", noPeers, now, 0, false},
		{"another API error", &jetstream.APIError{Code: 500, ErrorCode: 10074, Description: "replicas > 1 not supported in non-clustered mode"}, now.Add(time.Second), 0, false},
		{"another error", errors.New("nats: connection closed"), now.Add(time.Second), 0, false},
	} {
		wait, again := retryAfter(c.err, now, c.until)
		if wait != c.wait || again != c.again {
			t.Errorf("%s: retryAfter = %v, %v; want %v, %v", c.name, wait, again, c.wait, c.again)
		}
	}
}

func TestRetryingStopsWithItsContext(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	noPeers := &jetstream.APIError{Code: 400, ErrorCode: errNoPeers}
	tries := 0
	err := retrying(ctx, func() error {
		tries++
		if tries == 2 {
			cancel()
		}
		return noPeers
	})
	if !errors.Is(err, noPeers) || tries != 2 {
		t.Fatalf("retrying = %v after %d tries; want the placement error after 2", err, tries)
	}
}

// TestOpenWaitsForPlacement: an R3 bucket opened while its cluster has
// two servers, which JetStream refuses to place ("no suitable peers for
// placement"), is created once a third server joins, rather than failing
// the keygate's start.
func TestOpenWaitsForPlacement(t *testing.T) {
	ctx := natstest.Context(t)
	opts := natstest.ClusterOptions(t, 2)
	first := natstest.RunWith(t, opts[0])
	natstest.RunWith(t, opts[1])
	_, js := natstest.Connect(t, first)
	probe := jetstream.KeyValueConfig{Bucket: "probe", Replicas: 3}
	for { // until the two have a leader, which refuses to place R3
		_, err := js.CreateKeyValue(ctx, probe)
		var api *jetstream.APIError
		if errors.As(err, &api) && api.ErrorCode == errNoPeers {
			break
		}
		if err == nil {
			t.Fatal("an R3 bucket was placed on two servers")
		}
	}
	done := make(chan error, 1)
	go func() {
		_, err := OpenBucket(ctx, js, jetstream.KeyValueConfig{Bucket: "placed", Replicas: 3})
		done <- err
	}()
	natstest.RunWith(t, &server.Options{ServerName: "n3", Routes: opts[0].Routes,
		Cluster: server.ClusterOpts{Name: opts[0].Cluster.Name, Host: "127.0.0.1", Port: natstest.FreePort(t)}})
	if err := <-done; err != nil {
		t.Fatalf("open once the third server joined: %v", err)
	}
}
