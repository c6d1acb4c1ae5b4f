package alerts

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/keygate/keygate/internal/store"
)

// Entry names in the alerts bucket.
const (
	claimPrefix = "c."          // c.<alert id>: an alert, as published
	lowPrefix   = "low."        // low.<account>: which side of its threshold the balance was last seen on
	scanKey     = "scan.unused" // the unused-key scan's progress
	markerTTL   = time.Minute   // how long the bucket keeps the marker of an entry gone at its TTL
)

// errConflict: the entry changed since it was read (or exists, for a
// create).
var errConflict = errors.New("alerts entry changed meanwhile")

// bucket is the alerts bucket: entries written by compare-and-set, some
// with a TTL of their own.
type bucket struct {
	js     jetstream.JetStream
	stream jetstream.Stream
	name   string // of its stream
	prefix string // of its entries' subjects
}

func openBucket(ctx context.Context, js jetstream.JetStream, name string, replicas int) (*bucket, error) {
	kv, err := store.OpenBucket(ctx, js, jetstream.KeyValueConfig{Bucket: name, Replicas: replicas, LimitMarkerTTL: markerTTL,
		Description: "keygate alerts: claims, low-balance states, spend counters, the unused-key scan"})
	if err != nil {
		return nil, err
	}
	stream := "KV_" + kv.Bucket()
	st, err := js.Stream(ctx, stream)
	if err != nil {
		return nil, fmt.Errorf("open bucket %s: %w", name, err)
	}
	return &bucket{js: js, stream: st, name: stream, prefix: "$KV." + kv.Bucket() + "."}, nil
}

// get reads entry key into v. rev is its revision, that of a delete
// marker too, for the next write; found is false for an entry missing,
// deleted or unreadable (which the next write replaces).
func (b *bucket) get(ctx context.Context, key string, v any) (rev uint64, found bool, err error) {
	m, err := b.stream.GetLastMsgForSubject(ctx, b.prefix+key)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("read %s: %w", key, err)
	}
	if deleted(m.Header) || json.Unmarshal(m.Data, v) != nil {
		return m.Sequence, false, nil
	}
	return m.Sequence, true, nil
}

// put writes v as entry key if its revision is still rev (0: if it has
// none), living ttl (0: until replaced), and returns the new revision.
func (b *bucket) put(ctx context.Context, key string, v any, rev uint64, ttl time.Duration) (uint64, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return 0, err
	}
	opts := []jetstream.PublishOpt{jetstream.WithExpectLastSequencePerSubject(rev)}
	if ttl > 0 {
		opts = append(opts, jetstream.WithMsgTTL(ttl.Round(time.Second)))
	}
	ack, err := b.js.PublishMsg(ctx, &nats.Msg{Subject: b.prefix + key, Data: data}, opts...)
	var api *jetstream.APIError
	switch {
	case errors.As(err, &api) && (api.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		api.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant):
		return 0, errConflict
	case err != nil:
		return 0, fmt.Errorf("write %s: %w", key, err)
	}
	return ack.Sequence, nil
}

// create writes v as entry key if key has never been written (or not
// since its marker went), living ttl; errConflict if it has.
func (b *bucket) create(ctx context.Context, key string, v any, ttl time.Duration) error {
	_, err := b.put(ctx, key, v, 0, ttl)
	return err
}

// deleted reports whether an entry's headers mark it deleted, purged or
// gone at its TTL.
func deleted(h nats.Header) bool {
	switch h.Get("KV-Operation") {
	case "DEL", "PURGE":
		return true
	}
	return h.Get(jetstream.MarkerReasonHeader) != ""
}
