package alerts

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"
)

// Webhook is a URL that receives every alert as a signed POST.
type Webhook struct {
	URL    string
	Secret string
}

// posts bounds the POSTs in flight at once.
const posts = 8

// sender posts alerts to the webhooks, each delivery on its own until it
// succeeds, fails for good or runs out of attempts. At most Queue
// deliveries are kept: beyond, the oldest is dropped. Nothing waits for
// it.
type sender struct {
	o      Options
	stats  *Stats
	client *http.Client
	sem    chan struct{} // POSTs in flight
	mu     sync.Mutex
	ctx    context.Context
	live   []*delivery // oldest first
	closed bool        // wait was called: nothing more is taken
	wg     sync.WaitGroup
}

// delivery is one alert for one webhook.
type delivery struct {
	hook    int
	body    []byte
	id      string
	ctx     context.Context
	cancel  context.CancelFunc
	dropped bool // by the queue; guarded by sender.mu
	done    func(stopped bool)
}

func newSender(o Options, stats *Stats) *sender {
	client := &http.Client{
		Timeout: o.PostTimeout,
		// A redirect would send the signed alert elsewhere: it fails.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return &sender{o: o, stats: stats, client: client, sem: make(chan struct{}, posts), ctx: context.Background()}
}

// start makes deliveries last until ctx ends; those interrupted are
// handed back, for another keygate to make.
func (s *sender) start(ctx context.Context) {
	s.mu.Lock()
	s.ctx = ctx
	s.mu.Unlock()
}

// enqueue delivers body to every webhook, calling done once for each.
func (s *sender) enqueue(body []byte, id string, done func(stopped bool)) {
	for i := range s.o.Webhooks {
		d := &delivery{hook: i, body: body, id: id, done: done}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			done(true)
			continue
		}
		d.ctx, d.cancel = context.WithCancel(s.ctx)
		if len(s.live) >= s.o.Queue {
			old := s.live[0]
			s.live = s.live[1:]
			old.dropped = true
			old.cancel()
			s.stats.Dropped.Add(1)
		}
		s.live = append(s.live, d)
		s.wg.Add(1)
		s.mu.Unlock()
		go s.run(d)
	}
}

// run makes d's attempts.
func (s *sender) run(d *delivery) {
	defer s.wg.Done()
	stopped := s.attempts(d)
	s.mu.Lock()
	dropped := d.dropped
	if !dropped {
		for i, x := range s.live {
			if x == d {
				s.live = append(s.live[:i], s.live[i+1:]...)
				break
			}
		}
	}
	s.mu.Unlock()
	d.cancel()
	d.done(stopped && !dropped)
}

// attempts posts d until it succeeds or fails for good; true if it was
// interrupted first.
func (s *sender) attempts(d *delivery) (stopped bool) {
	for n := 1; ; n++ {
		retry, err := s.post(d)
		switch {
		case err == nil:
			s.stats.Delivered.Add(1)
			return false
		case d.ctx.Err() != nil:
			return true
		case !retry || n == s.o.Attempts:
			s.stats.Failed.Add(1)
			s.o.Log.Warn("alerts: webhook delivery failed", "webhook", d.hook, "alert", d.id, "attempts", n, "err", err)
			return false
		}
		s.stats.Retried.Add(1)
		s.o.Log.Debug("alerts: webhook delivery to retry", "webhook", d.hook, "alert", d.id, "attempt", n, "err", err)
		t := time.NewTimer(s.o.Retry << (n - 1))
		select {
		case <-t.C:
		case <-d.ctx.Done():
			t.Stop()
			return true
		}
	}
}

// post makes one attempt; retry says whether another may succeed.
func (s *sender) post(d *delivery) (retry bool, err error) {
	select {
	case s.sem <- struct{}{}:
	case <-d.ctx.Done():
		return false, d.ctx.Err()
	}
	defer func() { <-s.sem }()
	hook := s.o.Webhooks[d.hook]
	req, err := http.NewRequestWithContext(d.ctx, http.MethodPost, hook.URL, bytes.NewReader(d.body))
	if err != nil {
		return false, errors.New("the URL cannot be requested")
	}
	ts := strconv.FormatInt(s.o.Now().Unix(), 10)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "keygate-alerts")
	req.Header.Set(HeaderTimestamp, ts)
	req.Header.Set(HeaderSignature, Sign(hook.Secret, ts, d.body))
	req.Header.Set(HeaderID, d.id)
	resp, err := s.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // without the URL, which may carry a token
		}
		return true, err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	_ = resp.Body.Close()
	switch c := resp.StatusCode; {
	case c >= 200 && c < 300:
		return false, nil
	case c == http.StatusRequestTimeout || c == http.StatusTooManyRequests || c >= 500:
		return true, fmt.Errorf("answered %d", c)
	default:
		return false, fmt.Errorf("answered %d", c)
	}
}

// wait returns once every delivery has ended: after start's ctx ends,
// as soon as those interrupted are handed back.
func (s *sender) wait() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.wg.Wait()
}

// idle reports whether no delivery is kept.
func (s *sender) idle() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.live) == 0
}
