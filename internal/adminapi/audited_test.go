package adminapi_test

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/keygate/keygate/internal/admin"
	"github.com/keygate/keygate/internal/adminapi"
	"github.com/keygate/keygate/internal/audit"
	"github.com/keygate/keygate/internal/config"
	"github.com/keygate/keygate/internal/natstest"
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
	ns := natstest.Run(t)
	ctx := natstest.Context(t)
	_, js := natstest.Connect(t, ns)
	st, err := store.Open(ctx, js, store.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	trail, err := audit.Open(ctx, js, audit.Options{KeyFormat: config.Default().Keys.Format()})
	if err != nil {
		t.Fatal(err)
	}
	svc := admin.New(admin.Options{Store: st, Keys: config.Default().Keys, Record: admin.AuditTo(trail)})
	if err := svc.Follow(ctx); err != nil {
		t.Fatal(err)
	}
	idem, err := st.Idempotency(ctx)
	if err != nil {
		t.Fatal(err)
	}
	logs := &lockedBuf{}
	srv := httptest.NewServer(adminapi.New(adminapi.Options{Admin: svc, Idempotency: idem, Log: slog.New(slog.NewJSONHandler(logs, nil))}))
	defer srv.Close()
	_, tok, err := svc.CreateToken(ctx, admin.Actor{Kind: admin.ActorCLI}, "billing", []string{admin.ScopeBalances})
	if err != nil {
		t.Fatal(err)
	}
	records := func(account string) int {
		n := 0
		for r, err := range trail.Read(ctx, audit.Filter{Kind: "account", TargetID: account}) {
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
		for _, r := range []struct{ method, path, body string }{
			{"PUT", "/v1/accounts/" + account + "/balance", `{"balance":100}`},
			{"POST", "/v1/accounts/" + account + "/balance/credits", `{"amount":100000000}`},
		} {
			hr, _ := http.NewRequestWithContext(ctx, r.method, srv.URL+r.path, strings.NewReader(r.body))
			hr.Header.Set("Authorization", "Bearer "+tok)
			resp, err := http.DefaultClient.Do(hr)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != want || want != http.StatusOK && strings.Contains(string(b), account) {
				t.Errorf("%s %s: %d %s; want %d without the id", r.method, r.path, resp.StatusCode, b, want)
			}
		}
		if _, _, err := st.Account(ctx, account); account != "acme" && !errors.Is(err, store.ErrNotFound) {
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
