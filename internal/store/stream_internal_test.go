package store

import (
	"testing"

	"github.com/keygate/keygate/internal/natstest"
)

func TestMoneyStreamsAreStable(t *testing.T) {
	ns := natstest.Run(t)
	ctx := natstest.Context(t)
	_, js := natstest.Connect(t, ns)
	s, err := Open(ctx, js, DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	_ = s
	o := DefaultOptions()
	for _, cfg := range moneyStreams(s.accounts.Bucket(), o) {
		st, err := js.Stream(ctx, cfg.Name)
		if err != nil {
			t.Fatal(err)
		}
		if !same(st.CachedInfo().Config, cfg) {
			t.Errorf("%s reads back with other settings:\n%+v\nwant %+v", cfg.Name, st.CachedInfo().Config, cfg)
		}
	}
}
