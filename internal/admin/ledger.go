package admin

import (
	"context"
	"encoding/json"
	"time"

	"github.com/keygate/keygate/internal/settle"
)

// clockSkew is how far a keygate's clock may run ahead of the NATS
// server's: the ledger, which the server stamps, is read from this much
// before the first settlement asked for.
const clockSkew = time.Minute

// Settlements calls fn with each settlement of account ("" for every
// account) settled from since until before until (zero: no end), in the
// ledger's order, once per reservation: the ledger copies a settlement at
// least once, and the first copy wins. raw is the settlement as stored.
// It returns how many ledger messages were not settlements it could read.
func (s *Service) Settlements(ctx context.Context, account string, since, until time.Time, fn func(raw []byte, st *settle.Settlement) error) (int, error) {
	seen := map[string]bool{}
	bad := 0
	err := s.st.ReadLedger(ctx, account, since.Add(-clockSkew), func(b []byte) error {
		var st settle.Settlement
		if json.Unmarshal(b, &st) != nil || st.Reservation == "" {
			bad++
			return nil
		}
		if seen[st.Reservation] {
			return nil
		}
		seen[st.Reservation] = true
		if st.SettledAt.Before(since) || !until.IsZero() && !st.SettledAt.Before(until) {
			return nil
		}
		return fn(b, &st)
	})
	return bad, err
}
