package settle

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/nats-io/nats.go"
)

// Subjects. A keygate answers settlements of the reservations it holds
// on SettleSubject(holds)+"."+its id; any keygate answers those of
// backends on SettleSubject(holds), in one queue group.
const forwardTimeout = 2 * time.Second

// SettleSubject is where backends send settlements (Request).
func SettleSubject(holds string) string { return "keygate.settle." + holds }

var errNoHolder = errors.New("the keygate holding the reservation is gone")

// request is a settlement sent to the keygate that holds it.
type request struct {
	ID      string  `json:"reservation_id"`
	Outcome Outcome `json:"outcome"`
}

// reply is the answer to a request.
type reply struct {
	Settlement *Settlement `json:"settlement,omitempty"`
	Error      string      `json:"error,omitempty"`
	Unknown    bool        `json:"unknown,omitempty"`
}

// forward asks holder to settle reservation id.
func (s *Settler) forward(ctx context.Context, holder, id string, o Outcome) (*Settlement, error) {
	b, _ := json.Marshal(request{ID: id, Outcome: o})
	ctx, cancel := context.WithTimeout(ctx, forwardTimeout)
	defer cancel()
	m, err := s.nc.RequestWithContext(ctx, SettleSubject(s.holds)+"."+holder, b)
	if errors.Is(err, nats.ErrNoResponders) {
		return nil, errNoHolder
	}
	if err != nil {
		return nil, err
	}
	var r reply
	if err := json.Unmarshal(m.Data, &r); err != nil {
		return nil, err
	}
	switch {
	case r.Unknown:
		return nil, ErrUnknown
	case r.Error != "":
		return nil, errors.New(r.Error)
	}
	s.stats.Forwarded.Add(1)
	return r.Settlement, nil
}

// answer answers a request forwarded to this keygate.
func (s *Settler) answer(ctx context.Context, m *nats.Msg) {
	var req request
	var rep reply
	if err := json.Unmarshal(m.Data, &req); err != nil {
		rep.Error = "unreadable settlement request"
	} else if o, err := req.Outcome.checked(); err != nil {
		rep.Error = err.Error()
	} else if st, err := s.Settle(ctx, req.ID, o); err != nil {
		rep.Error, rep.Unknown = err.Error(), errors.Is(err, ErrUnknown)
	} else {
		rep.Settlement = st
	}
	b, _ := json.Marshal(rep)
	_ = m.Respond(b)
}
