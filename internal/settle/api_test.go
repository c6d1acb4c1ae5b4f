package settle_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/money"
	"github.com/keygate/keygate/internal/poll"
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
		{"not JSON", "Bearer " + token, `nope`, 400},
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
