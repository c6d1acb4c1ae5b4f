package adminapi_test

import (
	"bytes"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/keygate/keygate/internal/adminapi"
	"github.com/keygate/keygate/internal/audit"
	"github.com/keygate/keygate/internal/store"
)

// lockedBuf is a log's output, written by the server's goroutines.
type lockedBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}
func (l *lockedBuf) String() string { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

// TestEveryBalanceChangeIsAudited: with the audit trail wired as
// keygate serve wires it, a balance change the API answers 200 to is in
// the trail. An account id the trail cannot name (64 hex digits in a row,
// a key's shape) is refused before anything changes, and not shown back.
func TestEveryBalanceChangeIsAudited(t *testing.T) {
	logs := &lockedBuf{}
	f := newFixture(t, adminapi.Options{Log: slog.New(slog.NewJSONHandler(logs, nil))})
	records := func(account string) int {
		n := 0
		for r, err := range f.trail.Read(f.ctx, audit.Filter{Kind: "account", TargetID: account}) {
			if err != nil {
				break
			}
			if r.Target.ID == account {
				n++
			}
		}
		return n
	}
	hexID := strings.Repeat("0123456789abcdef", 4)               // 64 characters: an account id's pattern
	keyish := "ghub_sk_live_" + strings.Repeat("Ab1", 10) + "xy" // a key's shape, without its checksum
	for _, account := range []string{"acme", hexID, keyish} {
		want := http.StatusOK
		if account != "acme" {
			want = http.StatusBadRequest
		}
		for _, r := range []req{
			{method: "PUT", path: "/v1/accounts/" + account + "/balance", token: "balances", body: `{"balance":100}`},
			{method: "POST", path: "/v1/accounts/" + account + "/balance/credits", token: "balances", body: `{"amount":100000000}`},
		} {
			res := f.do(r)
			if res.StatusCode != want || want != http.StatusOK && strings.Contains(string(res.body), account) {
				t.Errorf("%s %s: %d %s; want %d without the id", r.method, r.path, res.StatusCode, res.body, want)
			}
		}
		if _, _, err := f.st.Account(f.ctx, account); account != "acme" && !errors.Is(err, store.ErrNotFound) {
			t.Errorf("account %s: %v; want none made", account, err)
		}
		if n, want := records(account), map[bool]int{true: 2, false: 0}[account == "acme"]; n != want {
			t.Errorf("account %s: %d audit records, want %d", account, n, want)
		}
	}
	if strings.Contains(logs.String(), "not recorded") {
		t.Errorf("a change was made without its record: %s", logs.String())
	}
}
