package store

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// Entry names in the accounts bucket beside the account records (whose
// ids hold no dot): a settlement is "s.<account>.<reservation>".
const settlementPrefix = "s."

// SettlementEntry is the entry of a settled reservation.
func SettlementEntry(account, reservation string) string {
	return settlementPrefix + account + "." + reservation
}

// openMoney lets the accounts bucket take atomic batches and entries
// that expire, and opens the holds bucket and the ledger, which copies
// every settlement out of the accounts bucket.
func (s *Store) openMoney(ctx context.Context, o Options) error {
	name := "KV_" + s.accounts.Bucket()
	st, err := s.js.Stream(ctx, name)
	if err != nil {
		return fmt.Errorf("open bucket %s: %w", s.accounts.Bucket(), err)
	}
	if cfg := st.CachedInfo().Config; !cfg.AllowAtomicPublish || !cfg.AllowMsgTTL {
		cfg.AllowAtomicPublish, cfg.AllowMsgTTL = true, true
		if _, err := s.js.UpdateStream(ctx, cfg); err != nil {
			return fmt.Errorf("bucket %s: allow atomic batches: %w", s.accounts.Bucket(), err)
		}
	}
	s.holdsStream, s.ledgerStream = o.HoldsStream, o.LedgerStream
	for _, cfg := range moneyStreams(s.accounts.Bucket(), o) {
		if err := EnsureStream(ctx, s.js, cfg); err != nil {
			return fmt.Errorf("open stream %s: %w", cfg.Name, err)
		}
	}
	return nil
}

// moneyStreams are the holds stream and the ledger, which sources the
// settlements of the accounts bucket.
func moneyStreams(accounts string, o Options) []jetstream.StreamConfig {
	return []jetstream.StreamConfig{{
		Name: o.HoldsStream, Description: "keygate holds of metered requests, each firing its expiry at its TTL", Replicas: o.Replicas,
		Subjects: []string{o.HoldsStream + ".>"}, MaxAge: o.HoldTTL + RecordGrace, Storage: jetstream.FileStorage,
		AllowMsgSchedules: true, AllowDirect: true,
	}, {
		Name: o.LedgerStream, Description: "keygate settled requests, by account", Replicas: o.Replicas,
		MaxAge: o.LedgerMaxAge, DenyDelete: true, DenyPurge: true, Storage: jetstream.FileStorage,
		Sources: []*jetstream.StreamSource{{Name: "KV_" + accounts, SubjectTransforms: []jetstream.SubjectTransformConfig{{
			Source: "$KV." + accounts + "." + settlementPrefix + "*.*", Destination: LedgerSubject(o.LedgerStream, "{{wildcard(1)}}"),
		}}}},
	}}
}

// LedgerSubject is the ledger's subject for an account's settlements.
func LedgerSubject(stream, account string) string { return stream + "." + account }

// HoldsStream is the name of the stream of hold records.
func (s *Store) HoldsStream() string { return s.holdsStream }
