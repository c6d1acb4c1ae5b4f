package alerts

import (
	"context"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/keygate/keygate/internal/money"
	"github.com/keygate/keygate/internal/ratelimit"
	"github.com/keygate/keygate/internal/settle"
)

// What a key's spend budget has spent in a period is the sum of the costs
// of its settlements, each counted once, by the keygate that wrote it.
// Each keygate adds what it settled to the period's counter in the bucket
// (spend.<budget id>.<period start ns>: {"spent_nanos":...,
// "limit_nanos":...}) every FlushEvery, by compare-and-set; the keygate
// whose write reaches a threshold (or, if it could not claim, any that
// writes later) claims the period's alert. The fleet engine's window for
// the budget is no measure of spend: it counts what keygates leased, ahead
// of need, and each settlement's unused estimate stays with the keygate
// that holds it.

// Percentages of a spend budget that are reported.
var budgetPercents = []int64{80, 100}

// periodGrace: a period's counter and claims outlive it by this much, for
// settlements of its requests that come late (a hold lives 24 h at most).
const periodGrace = 3 * 24 * time.Hour

// counter is a period's counter.
type counter struct {
	Spent int64 `json:"spent_nanos"`
	Limit int64 `json:"limit_nanos"`
}

// period is a spend budget's period: its budget ("spend.<budget id>",
// as the fleet engine names it) and the start of its window.
type period struct {
	budget string
	start  int64
}

// spent is what this keygate settled in a period and has not added yet.
type spent struct {
	nanos                  int64
	take                   settle.Take
	account, key, currency string
}

type reached struct {
	p       period
	percent int64
}

// spending adds settlements to the periods' counters.
type spending struct {
	a       *Alerts
	mu      sync.Mutex
	pending map[period]*spent
	claimed map[reached]time.Time // thresholds whose alert exists, until their period is over for periodGrace
	missed  map[reached]*Alert    // alerts this keygate could not claim yet
	busy    bool                  // a flush is under way
}

func newSpending(a *Alerts) *spending {
	return &spending{a: a, pending: map[period]*spent{}, claimed: map[reached]time.Time{}, missed: map[reached]*Alert{}}
}

// Settled counts a settlement of a key with a spend budget, as
// settle.Options.Settled: in memory only.
func (a *Alerts) Settled(r *settle.Reservation, st *settle.Settlement) {
	if r == nil || st == nil || r.Spend == nil || st.Cost <= 0 {
		return
	}
	s := a.spend
	s.mu.Lock()
	defer s.mu.Unlock()
	p := period{budget: r.Spend.Budget, start: r.Spend.Window}
	e := s.pending[p]
	if e == nil {
		e = &spent{take: *r.Spend}
		s.pending[p] = e
	}
	e.nanos = addSat(e.nanos, st.Cost)
	e.account, e.key, e.currency = st.Account, st.Key, st.Currency
}

// flush adds what was settled here to the counters, and claims what
// could not be claimed before.
func (s *spending) flush(ctx context.Context) {
	s.mu.Lock()
	batch := s.pending
	s.pending = map[period]*spent{}
	missed := s.missed
	s.missed = map[reached]*Alert{}
	s.busy = true
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.busy = false
		s.mu.Unlock()
	}()
	for p, e := range batch {
		if err := s.add(ctx, p, e); err != nil {
			s.keep(p, e)
			s.a.failed("adding spend of "+p.budget, err)
		}
	}
	for r, al := range missed {
		s.reach(ctx, r, al)
	}
	s.forgetOld()
}

// keep puts e back to be added at the next flush.
func (s *spending) keep(p period, e *spent) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if cur := s.pending[p]; cur != nil {
		cur.nanos = addSat(cur.nanos, e.nanos)
		return
	}
	s.pending[p] = e
}

// add adds e to its period's counter, then claims each threshold reached.
func (s *spending) add(ctx context.Context, p period, e *spent) error {
	key := p.budget + "." + strconv.FormatInt(p.start, 10)
	ttl := e.take.Len + periodGrace
	for {
		var c counter
		rev, _, err := s.a.kv.get(ctx, key, &c)
		if err != nil {
			return err
		}
		c.Spent, c.Limit = addSat(c.Spent, e.nanos), e.take.Limit
		if _, err = s.a.kv.put(ctx, key, c, rev, ttl); err == errConflict {
			continue
		} else if err != nil {
			return err
		}
		for _, pct := range budgetPercents {
			r := reached{p, pct}
			if c.Spent >= c.Limit/100*pct && !s.isClaimed(r) {
				s.reach(ctx, r, s.alert(p, e, pct, c.Spent))
			}
		}
		return nil
	}
}

// reach claims al, living until its period is over for periodGrace, or
// keeps it to claim at the next flush.
func (s *spending) reach(ctx context.Context, r reached, al *Alert) {
	err := s.a.claim(ctx, al, max(al.PeriodEnd.Sub(s.a.o.Now())+periodGrace, time.Hour))
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.missed[r] = al
		s.a.failed("budget alert of "+r.p.budget, err)
		return
	}
	s.claimed[r] = al.PeriodEnd.Add(periodGrace)
}

func (s *spending) isClaimed(r reached) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.claimed[r]
	return ok
}

// forgetOld drops what is known of periods over for periodGrace.
func (s *spending) forgetOld() {
	now := s.a.o.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	for r, until := range s.claimed {
		if now.After(until) {
			delete(s.claimed, r)
		}
	}
}

// alert is the alert of period p of e's budget reaching pct, with spend.
func (s *spending) alert(p period, e *spent, pct, spend int64) *Alert {
	lim := ratelimit.Limit{Units: e.take.Limit, Window: e.take.Len, Calendar: e.take.Calendar}
	_, end := ratelimit.Grid(p.budget, lim, time.Unix(0, p.start))
	start, end := time.Unix(0, p.start).UTC(), end.UTC()
	id := strings.TrimPrefix(p.budget, "spend.")
	return &Alert{ID: KindBudget + "." + id + "." + strconv.FormatInt(p.start, 10) + "." + strconv.FormatInt(pct, 10),
		Kind: KindBudget, AccountID: e.account, KeyID: e.key, BudgetID: id, Percent: pct,
		Threshold: nanos(e.take.Limit/100*pct, e.currency), Value: nanos(spend, e.currency), Limit: nanos(e.take.Limit, e.currency),
		Currency: e.currency, Period: &start, PeriodEnd: &end, At: s.a.o.Now().UTC()}
}

// nanos writes n nanos of currency's minor unit in major units.
func nanos(n int64, currency string) string {
	e, _ := money.Exact{}.AddNanos(n) // 0 to MaxInt64 nanos: in range
	return money.FormatExact(e, currency)
}

// addSat adds b to a, stopping at math.MaxInt64.
func addSat(a, b int64) int64 {
	if a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}

// idle reports whether nothing settled here waits to be added or claimed.
func (s *spending) idle() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.busy && len(s.pending) == 0 && len(s.missed) == 0
}
