package store

import (
	"context"
	"errors"
	"reflect"

	"github.com/nats-io/nats.go/jetstream"
)

// EnsureStream creates the stream cfg describes, or updates it when its
// settings differ from cfg's: keygates that start together send no
// update of an unchanged stream (each one races the server's other work
// on the stream for nothing). A try is repeated as retrying says (a lost
// API request, a stream the cluster cannot place yet).
func EnsureStream(ctx context.Context, js jetstream.JetStream, cfg jetstream.StreamConfig) error {
	return retrying(ctx, func() error { return ensureStream(ctx, js, cfg) })
}

func ensureStream(ctx context.Context, js jetstream.JetStream, cfg jetstream.StreamConfig) error {
	st, err := js.Stream(ctx, cfg.Name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		_, err = js.CreateStream(ctx, cfg)
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			return ensureStream(ctx, js, cfg)
		}
		return err
	}
	if err != nil {
		return err
	}
	if same(st.CachedInfo().Config, cfg) {
		return nil
	}
	_, err = js.UpdateStream(ctx, cfg)
	return err
}

// same reports whether the stream's settings are cfg's, in every setting
// cfg gives (the server fills in defaults for the others).
func same(have, want jetstream.StreamConfig) bool {
	hv, wv := reflect.ValueOf(have), reflect.ValueOf(want)
	for i := range wv.NumField() {
		if w := wv.Field(i); !w.IsZero() && !reflect.DeepEqual(hv.Field(i).Interface(), w.Interface()) {
			return false
		}
	}
	return true
}
