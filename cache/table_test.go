package cache_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
	"unsafe"

	"github.com/keygate/keygate/cache"
)

// rec stands for a key record.
type rec struct{ State string }

// entry is a record at a store revision, as Apply takes it.
func entry(state string, rev uint64) *cache.Entry[rec] {
	return &cache.Entry[rec]{Value: rec{state}, Found: true, Rev: rev}
}

// gone is a deletion at a store revision.
func gone(rev uint64) *cache.Entry[rec] { return &cache.Entry[rec]{Rev: rev} }

func newTable(t testing.TB, load cache.Loader[rec]) *cache.Table[rec] {
	t.Helper()
	tbl, err := cache.New(cache.Options{MaxEntries: 10_000, MaxNegative: 10_000, NegativeTTL: time.Hour}, load)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tbl.Close)
	return tbl
}

// get calls Get and fails the test on an error.
func get(t testing.TB, tbl *cache.Table[rec], id string) *cache.Entry[rec] {
	t.Helper()
	e, err := tbl.Get(context.Background(), id)
	if err != nil {
		t.Fatalf("Get(%s): %v", id, err)
	}
	return e
}

// result is what a Get should return.
type result struct {
	found bool
	rev   uint64
	err   error
}

type stats struct{ hits, negHits, misses, loads, loadErrors uint64 }

func statsOf(tbl *cache.Table[rec]) stats {
	s := tbl.Stats()
	return stats{s.Hits.Load(), s.NegativeHits.Load(), s.Misses.Load(), s.Loads.Load(), s.LoadErrors.Load()}
}

func TestGet(t *testing.T) {
	errDown := errors.New("nats: no responders")
	tests := []struct {
		name string
		// load answers the n-th load (from 1) of the record.
		load   func(n int) (rec, uint64, error)
		first  result // the first Get
		second result // the second Get, after Wait
		stats  stats  // after both Gets
	}{
		{
			name:   "hit after fill",
			load:   func(int) (rec, uint64, error) { return rec{"active"}, 7, nil },
			first:  result{true, 7, nil},
			second: result{true, 7, nil},
			stats:  stats{hits: 1, misses: 1, loads: 1},
		},
		{
			name:   "negative entry",
			load:   func(int) (rec, uint64, error) { return rec{}, 0, cache.ErrNotFound },
			first:  result{false, 0, nil},
			second: result{false, 0, nil},
			stats:  stats{negHits: 1, misses: 1, loads: 1},
		},
		{
			name: "wrapped not found is a negative entry",
			load: func(int) (rec, uint64, error) {
				return rec{}, 0, fmt.Errorf("get key: %w", cache.ErrNotFound)
			},
			first:  result{false, 0, nil},
			second: result{false, 0, nil},
			stats:  stats{negHits: 1, misses: 1, loads: 1},
		},
		{
			name: "load error is not cached",
			load: func(n int) (rec, uint64, error) {
				if n == 1 {
					return rec{}, 0, errDown
				}
				return rec{"active"}, 3, nil
			},
			first:  result{false, 0, errDown},
			second: result{true, 3, nil},
			stats:  stats{misses: 2, loads: 2, loadErrors: 1},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var n atomic.Int32
			tbl := newTable(t, func(_ context.Context, id string) (rec, uint64, error) {
				if id != "key-1" {
					t.Errorf("loader called for %q", id)
				}
				return tc.load(int(n.Add(1)))
			})

			e, err := tbl.Get(context.Background(), "key-1")
			if tc.first.err != nil {
				if !errors.Is(err, tc.first.err) || e != nil {
					t.Fatalf("first Get = %v, %v; want error %v", e, err, tc.first.err)
				}
			} else {
				if err != nil {
					t.Fatalf("first Get: %v", err)
				}
				if e.Found != tc.first.found || e.Rev != tc.first.rev {
					t.Fatalf("first Get = found %v rev %d, want found %v rev %d", e.Found, e.Rev, tc.first.found, tc.first.rev)
				}
			}
			tbl.Wait() // ristretto applies Sets asynchronously

			e = get(t, tbl, "key-1")
			if e.Found != tc.second.found || e.Rev != tc.second.rev {
				t.Fatalf("second Get = found %v rev %d, want found %v rev %d", e.Found, e.Rev, tc.second.found, tc.second.rev)
			}
			if e.Found && e.Value.State != "active" {
				t.Fatalf("second Get = %+v", e.Value)
			}
			if !e.Found && e.Value != (rec{}) {
				t.Fatalf("negative entry has value %+v", e.Value)
			}
			if got := statsOf(tbl); got != tc.stats {
				t.Fatalf("stats = %+v, want %+v", got, tc.stats)
			}
		})
	}
}

// 100 concurrent Gets of one missing id share one load. synctest makes
// "every Get is waiting" observable: synctest.Wait returns once the
// loader and all the other Gets are blocked.
func TestSingleFlight(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const callers = 100
		release := make(chan struct{})
		var loads atomic.Int32
		tbl := newTable(t, func(ctx context.Context, id string) (rec, uint64, error) {
			loads.Add(1)
			<-release
			if err := ctx.Err(); err != nil {
				return rec{}, 0, err // the first caller's cancellation must not end the shared load
			}
			return rec{"active"}, 4, nil
		})

		// The first caller gives up while the load is in flight.
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		results := make([]*cache.Entry[rec], callers)
		errs := make([]error, callers)
		var wg sync.WaitGroup
		for i := range callers {
			wg.Go(func() {
				c := context.Background()
				if i == 0 {
					c = ctx
				}
				results[i], errs[i] = tbl.Get(c, "key-1")
			})
		}
		synctest.Wait() // one Get in the loader, the rest waiting for it
		if n := loads.Load(); n != 1 {
			t.Fatalf("%d loads in flight, want 1", n)
		}
		if s := statsOf(tbl); s.misses != callers || s.loads != 1 {
			t.Fatalf("with all callers waiting: stats %+v, want %d misses and 1 load", s, callers)
		}
		cancel()
		close(release)
		wg.Wait()

		// The caller that gave up returns at once; the others share the
		// load it started.
		if !errors.Is(errs[0], context.Canceled) {
			t.Fatalf("caller 0, cancelled: %+v, %v", results[0], errs[0])
		}
		for i := 1; i < callers; i++ {
			if errs[i] != nil || results[i] == nil || !results[i].Found || results[i].Rev != 4 {
				t.Fatalf("caller %d: %+v, %v", i, results[i], errs[i])
			}
			if results[i] != results[1] {
				t.Fatalf("caller %d got a different entry from caller 1", i)
			}
		}
		if s := statsOf(tbl); s.loads != 1 || s.loadErrors != 0 {
			t.Fatalf("stats %+v, want exactly 1 load", s)
		}

		tbl.Wait()
		if e := get(t, tbl, "key-1"); e != results[1] {
			t.Fatalf("Get after the fill = %+v, want the cached entry", e)
		}
		if s := statsOf(tbl); s.loads != 1 || s.hits != 1 {
			t.Fatalf("stats %+v, want 1 load and 1 hit", s)
		}
		tbl.Close() // stop ristretto's goroutines inside the bubble
	})
}

// A load that hangs is cut off after LoadTimeout (fake time: no waiting).
func TestLoadTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tbl, err := cache.New(cache.Options{MaxEntries: 10, MaxNegative: 10, NegativeTTL: time.Minute, LoadTimeout: 3 * time.Second},
			func(ctx context.Context, _ string) (rec, uint64, error) {
				<-ctx.Done()
				return rec{}, 0, ctx.Err()
			})
		if err != nil {
			t.Fatal(err)
		}
		defer tbl.Close()
		start := time.Now()
		_, err = tbl.Get(context.Background(), "key-1")
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Get = %v, want DeadlineExceeded", err)
		}
		if d := time.Since(start); d != 3*time.Second {
			t.Fatalf("load cut off after %v, want 3s", d)
		}
	})
}

// change is one Apply and whether it should take effect.
type change struct {
	e       *cache.Entry[rec]
	applied bool
}

func TestApplyOrder(t *testing.T) {
	tests := []struct {
		name      string
		prime     bool // Get (and cache) the record before the changes
		load      func() (rec, uint64, error)
		applies   []change
		wantFound bool
		wantRev   uint64
		wantState string
	}{
		{
			name:      "older revision ignored, not cached",
			load:      func() (rec, uint64, error) { return rec{"v1"}, 1, nil },
			prime:     false,
			applies:   []change{{entry("v5", 5), true}, {entry("v3", 3), false}, {entry("v5 again", 5), false}},
			wantFound: true, wantRev: 5, wantState: "v5",
		},
		{
			name:      "older revision ignored, cached",
			load:      func() (rec, uint64, error) { return rec{"v1"}, 1, nil },
			prime:     true,
			applies:   []change{{entry("v5", 5), true}, {entry("v3", 3), false}},
			wantFound: true, wantRev: 5, wantState: "v5",
		},
		{
			name:      "newer revisions apply in turn",
			load:      func() (rec, uint64, error) { return rec{"v1"}, 1, nil },
			prime:     true,
			applies:   []change{{entry("v2", 2), true}, {entry("v3", 3), true}, {entry("v4", 4), true}},
			wantFound: true, wantRev: 4, wantState: "v4",
		},
		{
			name:      "deletion",
			load:      func() (rec, uint64, error) { return rec{"v1"}, 1, nil },
			prime:     true,
			applies:   []change{{gone(2), true}, {entry("v1", 1), false}},
			wantFound: false, wantRev: 2,
		},
		{
			name:      "creation clears a negative entry",
			load:      func() (rec, uint64, error) { return rec{}, 0, cache.ErrNotFound },
			prime:     true,
			applies:   []change{{entry("created", 1), true}},
			wantFound: true, wantRev: 1, wantState: "created",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tbl := newTable(t, func(context.Context, string) (rec, uint64, error) { return tc.load() })
			if tc.prime {
				get(t, tbl, "key-1")
				tbl.Wait()
			}
			for i, a := range tc.applies {
				if got := tbl.Apply("key-1", a.e); got != a.applied {
					t.Fatalf("Apply #%d (rev %d) = %v, want %v", i, a.e.Rev, got, a.applied)
				}
			}
			for range 3 { // from the store or from memory, the same answer
				e := get(t, tbl, "key-1")
				if e.Found != tc.wantFound || e.Rev != tc.wantRev || e.Value.State != tc.wantState {
					t.Fatalf("Get = found %v rev %d %+v, want found %v rev %d %q", e.Found, e.Rev, e.Value, tc.wantFound, tc.wantRev, tc.wantState)
				}
				tbl.Wait()
			}
		})
	}
}

// A revocation applied while a fill of the same key is in flight wins over
// the older record the fill read: the fill returns the revocation, and so
// does every later Get.
func TestApplyDuringFillNeverResurrects(t *testing.T) {
	const iterations = 2000
	tests := []struct {
		name   string
		change *cache.Entry[rec]
	}{
		{"revoked", entry("revoked", 2)},
		{"deleted", gone(2)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// Each id's first load reads the old record and blocks until the
			// test has applied the change; later loads (if ristretto drops
			// a Set) read the old record again, as a lagging store would.
			type gate struct {
				started, applied chan struct{}
				first            atomic.Bool
			}
			var gates sync.Map
			tbl := newTable(t, func(_ context.Context, id string) (rec, uint64, error) {
				v, _ := gates.Load(id)
				if g := v.(*gate); g.first.CompareAndSwap(false, true) {
					close(g.started)
					<-g.applied
				}
				return rec{"active"}, 1, nil
			})
			for i := range iterations {
				id := fmt.Sprint("key-", i)
				g := &gate{started: make(chan struct{}), applied: make(chan struct{})}
				gates.Store(id, g)
				type got struct {
					e   *cache.Entry[rec]
					err error
				}
				done := make(chan got, 1)
				go func() {
					e, err := tbl.Get(context.Background(), id)
					done <- got{e, err}
				}()
				<-g.started
				change := &cache.Entry[rec]{Value: tc.change.Value, Found: tc.change.Found, Rev: tc.change.Rev}
				if !tbl.Apply(id, change) {
					t.Fatalf("%s: Apply = false", id)
				}
				close(g.applied)
				r := <-done
				if r.err != nil || r.e.Rev != 2 || r.e.Found != tc.change.Found {
					t.Fatalf("%s: the fill in flight returned %+v, %v; want rev 2", id, r.e, r.err)
				}
				for range 3 {
					tbl.Wait()
					if e := get(t, tbl, id); e.Rev != 2 || e.Found != tc.change.Found || e.Value != tc.change.Value {
						t.Fatalf("%s: Get after the fill = found %v rev %d %+v, want rev 2", id, e.Found, e.Rev, e.Value)
					}
				}
			}
		})
	}
}

// Gets racing with fills and Apply: no Get that starts after Apply
// returned sees the old revision. In "after a fill", Apply runs the moment
// a fill has stored the old record (the loader's context ends when the fill
// is done), while that fill may still be handing its result to other
// callers: a Get joining it then must not get the old record either.
func TestGetConcurrentWithApply(t *testing.T) {
	const (
		iterations = 300
		readers    = 6
		after      = 5 // Gets each reader makes once it has seen Apply return
	)
	for _, afterFill := range []bool{false, true} {
		name := map[bool]string{false: "any time", true: "after a fill"}[afterFill]
		t.Run(name, func(t *testing.T) {
			type state struct {
				armed, applied atomic.Bool
			}
			var states sync.Map // id -> *state
			var tbl *cache.Table[rec]
			apply := func(id string, st *state) {
				if !tbl.Apply(id, entry("revoked", 2)) {
					t.Errorf("%s: Apply = false", id)
				}
				st.applied.Store(true)
			}
			tbl = newTable(t, func(ctx context.Context, id string) (rec, uint64, error) {
				v, _ := states.Load(id)
				if st := v.(*state); afterFill && st.armed.CompareAndSwap(false, true) {
					context.AfterFunc(ctx, func() { apply(id, st) })
				}
				return rec{"active"}, 1, nil // a store lagging behind the event
			})
			for i := range iterations {
				id := fmt.Sprint("key-", i)
				st := new(state)
				states.Store(id, st)
				cached := i%3 == 2 // some ids start cached
				if cached {
					st.armed.Store(true) // this fill is not the one to race with
					get(t, tbl, id)
					tbl.Wait()
				}
				var stale atomic.Int64
				start := make(chan struct{})
				var wg sync.WaitGroup
				for range readers {
					wg.Go(func() {
						<-start
						for n := 0; n < after; {
							seen := st.applied.Load() // before Get starts
							e, err := tbl.Get(context.Background(), id)
							if err != nil {
								t.Errorf("Get: %v", err)
								return
							}
							if seen {
								n++
								if e.Rev < 2 || e.Value.State != "revoked" {
									stale.Add(1)
								}
							}
						}
					})
				}
				close(start)
				if !afterFill || cached { // cached ids are not loaded: apply now
					apply(id, st)
				}
				wg.Wait()
				if n := stale.Load(); n > 0 {
					t.Fatalf("%s: %d Gets started after Apply returned saw the old record", id, n)
				}
			}
		})
	}
}

// settlingTable is a table whose key filter has seen nothing and whose
// Settle is settle, told each call's number (from 1).
func settlingTable(t *testing.T, settle func(ctx context.Context, call int32) error) *cache.Table[rec] {
	t.Helper()
	var calls atomic.Int32
	tbl, err := cache.New(cache.Options{MaxEntries: 100, MaxNegative: 100, NegativeTTL: time.Hour,
		MayExist: func(string) bool { return false },
		Settle:   func(ctx context.Context) error { return settle(ctx, calls.Add(1)) },
	}, func(context.Context, string) (rec, uint64, error) { return rec{}, 0, errors.New("no load expected") })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tbl.Close)
	return tbl
}

// blocked is a Settle round that does not end in time: it says it began
// on began and returns when ctx ends.
func blocked(ctx context.Context, began chan<- struct{}) error {
	began <- struct{}{}
	<-ctx.Done()
	return ctx.Err()
}

type answer struct {
	e   *cache.Entry[rec]
	err error
}

// getAsync calls Get(id) in a goroutine of its own.
func getAsync(tbl *cache.Table[rec], id string) <-chan answer {
	got := make(chan answer, 1)
	go func() { e, err := tbl.Get(context.Background(), id); got <- answer{e, err} }()
	return got
}

// A Get waiting for Settle to answer "missing" ends as soon as a change
// to its own record is applied, found; a change to another record, or
// none, leaves it to Settle, whose error it returns.
func TestSettleEndsAtTheRecordsChange(t *testing.T) {
	settling := make(chan struct{}, 4)
	tbl := settlingTable(t, func(ctx context.Context, _ int32) error { return blocked(ctx, settling) })
	got := getAsync(tbl, "new")
	<-settling
	tbl.Apply("other", entry("active", 5))
	tbl.Apply("new", entry("active", 7))
	a := <-got
	if a.err != nil || !a.e.Found || a.e.Rev != 7 {
		t.Fatalf("Get after its record's creation was applied: %+v, %v; want found at rev 7", a.e, a.err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if e, err := tbl.Get(ctx, "never"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Get of a record never created: %+v, %v; want Settle's error", e, err)
	}
}

// A change that leaves the record missing (a deletion) does not answer
// "missing" early: the Get waits for Settle again.
func TestSettleAgainAfterAChangeLeavingItMissing(t *testing.T) {
	var calls atomic.Int32
	settling := make(chan struct{}, 4)
	tbl := settlingTable(t, func(ctx context.Context, call int32) error {
		calls.Store(call)
		if call > 1 {
			return nil // the second round: every change before it applied
		}
		return blocked(ctx, settling)
	})
	got := getAsync(tbl, "k")
	<-settling
	tbl.Apply("k", gone(9))
	if a := <-got; a.err != nil || a.e.Found || calls.Load() != 2 {
		t.Fatalf("Get woken by a deletion: %+v, %v after %d Settle calls; want missing after 2", a.e, a.err, calls.Load())
	}
}

// TestGetFromABuffer: Get answers from an id in a buffer that is
// overwritten once it returns as from an id of its own, with the same
// counts.
func TestGetFromABuffer(t *testing.T) {
	var loads atomic.Int32
	load := func(_ context.Context, id string) (rec, uint64, error) {
		loads.Add(1)
		if id == "unknown" {
			return rec{}, 0, cache.ErrNotFound
		}
		return rec{"active"}, 3, nil
	}
	viaGet, viaBuf := newTable(t, load), newTable(t, load)
	buf := make([]byte, 0, 16)
	fromBuf := func(id string) *cache.Entry[rec] {
		buf = append(buf[:0], id...)
		e, err := viaBuf.Get(context.Background(), unsafe.String(&buf[0], len(buf)))
		if err != nil {
			t.Fatalf("Get(%s) from a buffer: %v", id, err)
		}
		copy(buf, "xxxxxxxxxxxxxxxx"[:len(buf)]) // the caller's next use
		return e
	}
	for _, step := range []string{"k", "unknown", "wait", "k", "unknown", "delete k", "k"} {
		switch step {
		case "wait":
			viaGet.Wait()
			viaBuf.Wait()
		case "delete k":
			viaGet.Apply("k", gone(4))
			viaBuf.Apply("k", gone(4))
		default:
			want, got := get(t, viaGet, step), fromBuf(step)
			if got.Found != want.Found || got.Rev != want.Rev || got.Value != want.Value {
				t.Fatalf("%s: from a buffer %+v, from a string of its own %+v", step, got, want)
			}
		}
	}
	viaGet.Wait()
	viaBuf.Wait()
	if got, want := statsOf(viaBuf), statsOf(viaGet); got != want {
		t.Fatalf("from a buffer counted %+v, from strings of their own %+v", got, want)
	}
	if _, err := viaBuf.Get(context.Background(), "unknown"); err != nil {
		t.Fatal(err)
	}
	if e := get(t, viaBuf, "unknown"); e.Found {
		t.Fatal("a record known missing was found")
	}
}
