// Package admin is keygate's administration: the operations on keys,
// balances, usage and admin tokens that the command line and the admin
// API both call. It checks what they are given, builds and changes the
// records (by compare-and-set), makes the views both show, and tells a
// Recorder of every change. Callers parse their own syntax (flags, JSON)
// and print the results their own way.
package admin

import (
	"time"

	"github.com/keygate/keygate/internal/apikey"
	"github.com/keygate/keygate/internal/config"
	"github.com/keygate/keygate/internal/store"
)

// Options configure a Service.
type Options struct {
	Store *store.Store
	// Keys is the key format: new keys get its prefixes and length.
	Keys config.Keys
	// Record is told of every change; nil records nothing.
	Record Recorder
	// Now is the clock; nil is time.Now.
	Now func() time.Time
}

// Service runs the operations against one store.
type Service struct {
	st       *store.Store
	keys     config.Keys
	format   apikey.Format
	recorder Recorder
	now      func() time.Time
	// live, once Follow has started it, is the key index kept current by
	// a watch; without it each listing reads the bucket once.
	live *keyIndex
}

// New returns a Service.
func New(o Options) *Service {
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Service{st: o.Store, keys: o.Keys, format: o.Keys.Format(), recorder: o.Record, now: o.Now}
}

// Store is the store the Service works on.
func (s *Service) Store() *store.Store { return s.st }
