package cache

import (
	"context"
	"errors"
	"slices"
	"sync"
)

// errApplied ends a Get's wait for Settle: a change to its id was
// applied meanwhile. A record it makes found is as current as the change
// stream, as any record found in memory is; one still missing waits for
// Settle again.
var errApplied = errors.New("cache: a change to the record was applied")

// waits are the Gets waiting for Settle, by id. A key created the moment
// before its first request is usually applied within milliseconds, while
// Settle may take a store round trip and the wait for a round (up to the
// barrier's gap while unknown keys flood in): its wait ends at the
// change instead.
type waits struct {
	mu sync.Mutex
	by map[string][]*waiter
}

type waiter struct{ cancel context.CancelCauseFunc }

// join returns a context for the wait of a Get of id, ended by a change
// applied to id, and what to call after it: it reports whether such a
// change ended the wait.
func (ws *waits) join(ctx context.Context, id string) (context.Context, func() bool) {
	wctx, cancel := context.WithCancelCause(ctx)
	w := &waiter{cancel: cancel}
	ws.mu.Lock()
	if ws.by == nil {
		ws.by = map[string][]*waiter{}
	}
	ws.by[id] = append(ws.by[id], w)
	ws.mu.Unlock()
	return wctx, func() bool {
		ws.mu.Lock()
		if rest := slices.DeleteFunc(ws.by[id], func(o *waiter) bool { return o == w }); len(rest) > 0 {
			ws.by[id] = rest
		} else {
			delete(ws.by, id)
		}
		ws.mu.Unlock()
		cancel(nil)
		return errors.Is(context.Cause(wctx), errApplied)
	}
}

// applied ends the waits of the Gets of id.
func (ws *waits) applied(id string) {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	for _, w := range ws.by[id] {
		w.cancel(errApplied)
	}
	delete(ws.by, id)
}
