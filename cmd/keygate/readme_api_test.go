package main

import (
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"github.com/keygate/keygate/internal/natstest"
)

// TestREADMEAdminAPI runs the README's admin API lines as written, with
// curl and bash, against keygate serve with the admin API on a free
// loopback port: the balance is set and credited once, the key made,
// changed and revoked, and the audit trail shows it.
func TestREADMEAdminAPI(t *testing.T) {
	for _, tool := range []string{"curl", "bash", "sed"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found: `make tools` installs curl", tool)
		}
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	block := regexp.MustCompile("(?s)\n## Admin API\n.*?```sh\n(.*?)```").FindSubmatch(readme)
	if block == nil {
		t.Fatal("the README's Admin API section has no sh block")
	}
	url := natstest.Run(t).ClientURL()
	api := freeAddr(t)
	s := startServe(t, nil, "--nats-url", url, "--api-addr", api)
	script := strings.NewReplacer("bin/keygate ", binary+" ", "127.0.0.1:9300", api).Replace(string(block[1]))
	// Each Idempotency-Key line runs twice: the second must change nothing.
	script = regexp.MustCompile(`(?m)^curl (?:[^\n]*\\\n)*[^\n]*$`).ReplaceAllStringFunc(script, func(c string) string {
		if strings.Contains(c, "Idempotency-Key") {
			return c + "\n" + c
		}
		return c
	})
	if n := strings.Count(script, "-H 'Idempotency-Key"); n != 4 {
		t.Fatalf("%d Idempotency-Key lines after doubling, want 4 (two commands, twice each):\n%s", n, script)
	}
	cmd := exec.CommandContext(t.Context(), "bash", "-euo", "pipefail", "-c", script)
	cmd.Env = append(cleanEnv(), "KEYGATE_NATS_URL="+url)
	out, err := cmd.CombinedOutput()
	text := string(out)
	if err != nil {
		t.Fatalf("the README's admin API lines: %v\n%s", err, text)
	}
	for _, want := range []string{
		`"balance":10000`,                        // set
		`"key":"ghub_sk_live_`,                   // created, shown once
		`"key":null`,                             // the same create again: no secret
		`"requests":60`,                          // patched
		`"balance":60000`,                        // credited once, sent twice
		`"status":"revoked"`,                     // revoked
		"key.create", "key.update", "key.revoke", // the audit trail
	} {
		if !strings.Contains(text, want) {
			t.Errorf("the output lacks %s:\n%s", want, text)
		}
	}
	if strings.Contains(text, `"balance":110000`) {
		t.Errorf("the credit was applied twice:\n%s", text)
	}
	if strings.Contains(s.log(), "kga_") || strings.Contains(s.log(), "ghub_sk_live_") {
		t.Errorf("a token or key is in keygate's log:\n%s", s.log())
	}
}
