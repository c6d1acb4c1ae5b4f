package keyfilter

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/keygate/keygate/internal/tick"
)

// Sources are where a Keeper reads keys and keeps its snapshot.
type Sources struct {
	// Keys is the keys bucket; its key records are entries "hash.<hex>".
	Keys jetstream.KeyValue
	// Snapshots keeps the filter, as object SnapshotName.
	Snapshots jetstream.ObjectStore
	// Applied is the last keys-bucket revision whose change the Keeper
	// has been given with Add.
	Applied func() uint64
	// Current reports whether the changes are being followed: false during
	// an outage or a stall, when keys may exist that Add was not given.
	Current func() bool
}

// SnapshotName is the snapshot's object name.
const SnapshotName = "keys"

// revisionMeta names the snapshot's metadata entry holding the keys-bucket
// revision it covers.
const revisionMeta = "keys-revision"

// Keeper holds the filter of every key hash in the keys bucket: it loads
// it at start (from the snapshot and the changes after it, or from the
// bucket's key names), adds each created key it is told of, rebuilds it
// when it has grown, and writes snapshots for the keygates that start
// after it. Until loaded, or while the changes are not followed, it
// answers that every key may exist.
type Keeper struct {
	src      Sources
	log      *slog.Logger
	bloom    atomic.Pointer[Bloom]
	mu       sync.Mutex // guards pending, and swapping the filter
	pending  []string   // keys added while a filter is being built
	building bool
	rejected atomic.Uint64
	saved    int64 // keys in the filter at the last snapshot written or read
}

// NewKeeper returns a Keeper that knows nothing yet.
func NewKeeper(src Sources, log *slog.Logger) *Keeper {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Keeper{src: src, log: log, building: true}
}

// MayExist reports whether the key with hash may be in the store: true
// unless the filter is loaded, the changes are followed and the filter
// has never seen it.
func (k *Keeper) MayExist(hash string) bool {
	b := k.bloom.Load()
	if b == nil || !k.src.Current() || b.MayContain(hash) {
		return true
	}
	k.rejected.Add(1)
	return false
}

// Ready reports whether the filter is loaded.
func (k *Keeper) Ready() bool { return k.bloom.Load() != nil }

// Rejected is how many lookups the filter has spared.
func (k *Keeper) Rejected() uint64 { return k.rejected.Load() }

// Bytes is the memory the filter takes (0 until loaded), and Keys the keys
// in it.
func (k *Keeper) Bytes() int64 {
	if b := k.bloom.Load(); b != nil {
		return b.Bytes()
	}
	return 0
}

// Add records a key created or changed in the store.
func (k *Keeper) Add(hash string) {
	k.mu.Lock()
	if k.building {
		k.pending = append(k.pending, hash)
	}
	b := k.bloom.Load()
	k.mu.Unlock()
	if b != nil {
		b.Add(hash)
	}
}

// Run loads the filter, then every interval rebuilds it if it has grown
// crowded and writes a snapshot if keys were added since the last, until
// ctx ends.
func (k *Keeper) Run(ctx context.Context, interval time.Duration) {
	for ctx.Err() == nil {
		begin := time.Now()
		err := k.load(ctx)
		if err == nil {
			k.log.Info("key filter loaded", "keys", k.bloom.Load().Keys(), "bytes", k.Bytes(), "ms", time.Since(begin).Milliseconds())
			break
		}
		if ctx.Err() != nil {
			return
		}
		k.log.Warn("loading the key filter; every unknown key is looked up meanwhile", "err", err)
		sleep(ctx, 5*time.Second)
	}
	tick.Every(ctx, interval, func() {
		if err := k.maintain(ctx); err != nil && ctx.Err() == nil {
			k.log.Warn("maintaining the key filter", "err", err)
		}
	})
}

func (k *Keeper) maintain(ctx context.Context) error {
	if k.bloom.Load().Crowded() {
		k.startBuilding()
		b, rev, err := k.list(ctx)
		if err != nil {
			k.finishBuilding(nil)
			return err
		}
		k.finishBuilding(b)
		return k.save(ctx, rev)
	}
	if b := k.bloom.Load(); b.Keys()-k.saved >= max(b.Keys()/100, 1) {
		return k.save(ctx, k.src.Applied())
	}
	return nil
}

// load reads the snapshot and the changes after it, or, without a
// snapshot, every key name in the bucket (and writes a snapshot).
func (k *Keeper) load(ctx context.Context) error {
	b, rev, err := k.readSnapshot(ctx)
	switch {
	case err == nil:
		err = k.replay(ctx, b, rev)
		if err == nil {
			k.finishBuilding(b)
		}
		return err
	case !errors.Is(err, jetstream.ErrObjectNotFound):
		k.log.Warn("the key filter snapshot is unreadable; reading every key name", "err", err)
	}
	b, rev, err = k.list(ctx)
	if err != nil {
		return err
	}
	k.finishBuilding(b)
	if err := k.save(ctx, rev); err != nil {
		k.log.Warn("writing the key filter snapshot", "err", err)
	}
	return nil
}

func (k *Keeper) startBuilding() {
	k.mu.Lock()
	k.building, k.pending = true, nil
	k.mu.Unlock()
}

// finishBuilding makes b the filter, with the keys added meanwhile; a nil
// b keeps the one in use.
func (k *Keeper) finishBuilding(b *Bloom) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if b != nil {
		for _, h := range k.pending {
			b.Add(h)
		}
		k.bloom.Store(b)
	}
	k.building, k.pending = false, nil
}

// list builds a filter from every key record's name in the bucket, and
// returns it with a revision it covers.
func (k *Keeper) list(ctx context.Context) (*Bloom, uint64, error) {
	rev := k.src.Applied() // every key up to here is listed, later ones come through Add
	st, err := k.src.Keys.Status(ctx)
	if err != nil {
		return nil, 0, err
	}
	b := NewBloom(int64(st.Values()))
	return b, rev, k.replay(ctx, b, 0)
}

// replay adds to b every key written after revision rev. Only a listing
// that reaches its end counts: a filter missing keys would deny them.
func (k *Keeper) replay(ctx context.Context, b *Bloom, rev uint64) error {
	opts := []jetstream.WatchOpt{jetstream.MetaOnly(), jetstream.IgnoreDeletes()}
	if rev > 0 {
		opts = append(opts, jetstream.ResumeFromRevision(rev+1))
	}
	w, err := k.src.Keys.Watch(ctx, "hash.*", opts...)
	if err != nil {
		return err
	}
	defer w.Stop() //nolint:errcheck // nothing to do about a failed unsubscribe
	for e := range w.Updates() {
		if e == nil {
			return nil
		}
		b.Add(strings.TrimPrefix(e.Key(), "hash."))
	}
	return fmt.Errorf("reading key names: the watch ended early (%v)", ctx.Err())
}

func (k *Keeper) readSnapshot(ctx context.Context) (*Bloom, uint64, error) {
	info, err := k.src.Snapshots.GetInfo(ctx, SnapshotName)
	if err != nil {
		return nil, 0, err
	}
	rev, err := strconv.ParseUint(info.Metadata[revisionMeta], 10, 64)
	if err != nil {
		return nil, 0, fmt.Errorf("snapshot without a revision")
	}
	data, err := k.src.Snapshots.GetBytes(ctx, SnapshotName)
	if err != nil {
		return nil, 0, err
	}
	b, err := Decode(data)
	if err != nil {
		return nil, 0, err
	}
	k.saved = b.Keys()
	return b, rev, nil
}

// save writes the filter as the snapshot covering revision rev, unless
// the snapshot there covers as much.
func (k *Keeper) save(ctx context.Context, rev uint64) error {
	if info, err := k.src.Snapshots.GetInfo(ctx, SnapshotName); err == nil {
		if r, err := strconv.ParseUint(info.Metadata[revisionMeta], 10, 64); err == nil && r >= rev {
			return nil
		}
	}
	b := k.bloom.Load()
	data := b.Encode()
	_, err := k.src.Snapshots.Put(ctx, jetstream.ObjectMeta{Name: SnapshotName,
		Metadata: map[string]string{revisionMeta: strconv.FormatUint(rev, 10)}}, bytes.NewReader(data))
	if err == nil {
		k.saved = b.Keys()
	}
	return err
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
