package alerts

import "sync/atomic"

// Stats count what Alerts did: totals, no account's or key's own.
type Stats struct {
	byKind map[string]*atomic.Uint64 // alerts published, by kind
	other  atomic.Uint64             // of kinds this keygate does not know
	// Webhook POSTs: delivered, failed and retried, failed for good
	// (every attempt made, or an answer no retry changes), and dropped
	// from a full queue.
	Delivered, Retried, Failed, Dropped atomic.Uint64
	// Lost counts account changes not examined because too many waited:
	// each account's next change is.
	Lost atomic.Uint64
	// Errors counts operations on the alerts bucket that failed.
	Errors atomic.Uint64
}

func (s *Stats) init() {
	s.byKind = map[string]*atomic.Uint64{}
	for _, k := range Kinds {
		s.byKind[k] = &atomic.Uint64{}
	}
}

func (s *Stats) published(kind string) {
	if c := s.byKind[kind]; c != nil {
		c.Add(1)
		return
	}
	s.other.Add(1)
}

// Published is how many alerts of kind this keygate published; "other"
// counts kinds it does not know.
func (s *Stats) Published(kind string) uint64 {
	if c := s.byKind[kind]; c != nil {
		return c.Load()
	}
	if kind == "other" {
		return s.other.Load()
	}
	return 0
}
