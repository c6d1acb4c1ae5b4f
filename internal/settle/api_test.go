package settle_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/keygate/keygate/internal/money"
	"github.com/keygate/keygate/internal/poll"
	"github.com/keygate/keygate/internal/pricing"
	"github.com/keygate/keygate/internal/settle"
	"github.com/keygate/keygate/internal/store"
)

const token = "0123456789abcdef0123456789abcdef"

// The settle API over HTTP: the token, the body, the answers.
func TestSettleHTTP(t *testing.T) {
	ctx, kgs := fleet(t, 1, 1000, time.Hour)
	srv := httptest.NewServer(kgs[0].set.Handler(token))
	defer srv.Close()
	r := kgs[0].reserve(t, ctx, 10, 10, time.Hour)
	post := func(auth, body string) (int, map[string]any) {
		req, _ := http.NewRequest("POST", srv.URL, strings.NewReader(body))
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&m)
		return resp.StatusCode, m
	}
	body := `{"reservation_id":"` + r.ID + `","status":200,"usage":{"prompt_tokens":4,"completion_tokens":3,"prompt_tokens_details":{"cached_tokens":2}}}`
	for _, tc := range []struct {
		name, auth, body string
		status           int
	}{
		{"no token", "", body, 401},
		{"wrong token", "Bearer " + strings.Repeat("x", 32), body, 401},
		{"the token without its scheme", token, body, 401},
		{"another scheme", "Basic " + token, body, 401},
		{"the token and more", "Bearer " + token + "x", body, 401},
		{"not JSON", "bearer " + token, `nope`, 400},
		{"unknown reservation", "Bearer " + token, `{"reservation_id":"` + "res_kg0_999_0_acme" + `"}`, 404},
		{"settled", "Bearer " + token, body, 200},
		{"again", "Bearer " + token, strings.Replace(body, `"prompt_tokens":4`, `"prompt_tokens":400`, 1), 200},
	} {
		status, m := post(tc.auth, tc.body)
		if status != tc.status {
			t.Fatalf("%s: %d %v, want %d", tc.name, status, m, tc.status)
		}
		if status == 200 && m["cost_nanos"] != float64((2+1+6)*money.NanosPerMinor) {
			t.Fatalf("%s: settled at %v (2 uncached at 1, 2 cached at 0.5, 3 out at 2 = 9 minor units)", tc.name, m["cost_nanos"])
		}
	}
	if got := balance(t, ctx, kgs[0]); got != (money.Exact{Minor: 991}) {
		t.Fatalf("balance %v, want 991", got)
	}
	off := httptest.NewServer(kgs[0].set.Handler(""))
	defer off.Close()
	resp, err := http.Post(off.URL, "application/json", strings.NewReader(body))
	if err != nil || resp.StatusCode != 404 {
		t.Fatalf("settle API without a token: %v, %v", resp.StatusCode, err)
	}
}

// The settle API over NATS: any keygate answers, the holder settles.
func TestSettleNATS(t *testing.T) {
	ctx, kgs := fleet(t, 2, 1000, time.Hour)
	r := kgs[1].reserve(t, ctx, 10, 10, time.Hour)
	nc := kgs[0].st.JetStream().Conn()
	var st struct {
		Settlement settle.Settlement `json:"settlement"`
		Error      string            `json:"error"`
	}
	var m []byte
	poll.Until(t, 10*time.Second, "a keygate answers settlements", func() bool { // the queue subscription starts with Run
		msg, err := nc.Request(settle.SettleSubject(store.DefaultOptions().HoldsStream), []byte(`{"reservation_id":"`+r.ID+`","usage":{"input_tokens":1,"output_tokens":1}}`), 5*time.Second)
		if err == nil {
			m = msg.Data
		}
		return err == nil
	})
	if err := json.Unmarshal(m, &st); err != nil || st.Error != "" || st.Settlement.Cost != 3*money.NanosPerMinor {
		t.Fatalf("NATS settle: %s", m)
	}

}

// A usage that cannot be charged (a cost out of range of int64 nanos, a
// count below 0, cached input above input) settles at once at the
// estimate, as a response without usage does, however it arrives: the
// settle API, another keygate forwarding it, the holder's own subject.
// An expiry sent to the holder's subject is refused: the holder alone
// decides it.
func TestSettleUnchargeableUsage(t *testing.T) {
	ctx, kgs := fleet(t, 2, 1000, time.Hour)
	srv := httptest.NewServer(kgs[0].set.Handler(token))
	defer srv.Close()
	nc := kgs[1].st.JetStream().Conn()
	holder := settle.SettleSubject(kgs[0].st.HoldsStream()) + ".kg0"
	// toHolder sends outcome (as JSON) for id on the holder's subject.
	toHolder := func(id, outcome string) (*settle.Settlement, error) {
		var m *nats.Msg
		var err error
		poll.Until(t, 10*time.Second, "keygate 0 answers", func() bool { // its subscription starts with Run
			m, err = nc.Request(holder, []byte(`{"reservation_id":"`+id+`","outcome":`+outcome+`}`), 5*time.Second)
			return !errors.Is(err, nats.ErrNoResponders)
		})
		if err != nil {
			return nil, err
		}
		var rep struct {
			Settlement *settle.Settlement `json:"settlement"`
			Error      string             `json:"error"`
		}
		if err := json.Unmarshal(m.Data, &rep); err != nil || rep.Error != "" {
			return nil, fmt.Errorf("%s: %v", m.Data, err)
		}
		return rep.Settlement, nil
	}
	overflow := settle.Outcome{Usage: pricing.Usage{Input: 10, Output: 1e12}, HasUsage: true} // 2e12 minor units
	for _, tc := range []struct {
		name   string
		settle func(id string) (*settle.Settlement, error)
	}{
		{"cost out of range, settle API", func(id string) (*settle.Settlement, error) {
			return postSettle(t, srv.URL, `{"reservation_id":"`+id+`","status":200,"usage":{"prompt_tokens":10,"completion_tokens":1000000000000}}`)
		}},
		{"cost out of range, at the holder", func(id string) (*settle.Settlement, error) { return kgs[0].set.Settle(ctx, id, overflow) }},
		{"cost out of range, forwarded", func(id string) (*settle.Settlement, error) { return kgs[1].set.Settle(ctx, id, overflow) }},
		{"negative count, holder's subject", func(id string) (*settle.Settlement, error) {
			return toHolder(id, `{"Usage":{"Input":-1,"Output":5},"HasUsage":true}`)
		}},
		{"cached above input, holder's subject", func(id string) (*settle.Settlement, error) {
			return toHolder(id, `{"Usage":{"Input":1,"CachedInput":2,"Output":5},"HasUsage":true}`)
		}},
	} {
		before := balance(t, ctx, kgs[0])
		r := kgs[0].reserve(t, ctx, 10, 10, time.Hour)
		st, err := tc.settle(r.ID)
		if err != nil || st.Status != settle.StatusNoUsage || st.Cost != r.Estimate || st.TokensIn != 10 || st.TokensOut != 10 {
			t.Errorf("%s: %+v, %v; want no_usage at the estimate", tc.name, st, err)
		}
		want, _ := before.AddNanos(-r.Estimate)
		if got := balance(t, ctx, kgs[0]); got != want {
			t.Errorf("%s: balance %v, want %v", tc.name, got, want)
		}
		if _, held := kgs[0].funds.Balance("acme"); held != 0 || kgs[0].set.Outstanding() != 0 {
			t.Errorf("%s: %d held, %d outstanding after the settlement", tc.name, held, kgs[0].set.Outstanding())
		}
	}
	r := kgs[0].reserve(t, ctx, 10, 10, time.Hour)
	if st, err := toHolder(r.ID, `{"Expired":true}`); err == nil {
		t.Errorf("an expiry sent to the holder's subject: %+v", st)
	}
	if n := kgs[0].set.Outstanding(); n != 1 {
		t.Errorf("%d outstanding after a refused expiry, want 1", n)
	}
}

// postSettle sends body to the settle API at url.
func postSettle(t testing.TB, url, body string) (*settle.Settlement, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "POST", url, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("%d %s", resp.StatusCode, b)
	}
	var st settle.Settlement
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, err
	}
	return &st, nil
}

// TestSettleSpellings: a body that a reader could take two ways (a
// member given twice, a member's name in another case, which
// encoding/json would match) is refused, and the reservation stays held:
// a proxy or logger that reads "status":200 must not see a settlement of
// a failure, or the reverse.
func TestSettleSpellings(t *testing.T) {
	ctx, kgs := fleet(t, 1, 1000, time.Hour)
	srv := httptest.NewServer(kgs[0].set.Handler(token))
	defer srv.Close()
	r := kgs[0].reserve(t, ctx, 10, 10, time.Hour)
	usage := `"usage":{"prompt_tokens":10,"completion_tokens":10}`
	for _, body := range []string{
		`{"reservation_id":"` + r.ID + `","status":200,` + usage + `,"STATUS":500}`,
		`{"reservation_id":"` + r.ID + `","status":200,` + usage + `,"status":500}`,
		`{"Reservation_ID":"` + r.ID + `","status":200,` + usage + `}`,
		`{"reservation_id":"` + r.ID + `","status":200,"usage":{"prompt_tokens":10,"completion_tokens":10,"Completion_Tokens":0}}`,
	} {
		if st, err := postSettle(t, srv.URL, body); err == nil || !strings.HasPrefix(err.Error(), "400 ") {
			t.Errorf("%s: settled %+v, %v; want a 400", body, st, err)
		}
	}
	st, err := postSettle(t, srv.URL, `{"reservation_id":"`+r.ID+`","status":200,`+usage+`}`)
	if err != nil || st.Status != settle.StatusSettled {
		t.Fatalf("the reservation, once asked plainly: %+v, %v; want settled from its usage", st, err)
	}
}
