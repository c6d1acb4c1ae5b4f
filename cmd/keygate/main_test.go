package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keygate/keygate/internal/apikey"
	"github.com/keygate/keygate/internal/natstest"
)

const testVersion = "v0.0.0-e2e"

// binary is the keygate executable built once by TestMain.
var binary string

func TestMain(m *testing.M) {
	os.Exit(buildAndRun(m))
}

func buildAndRun(m *testing.M) int {
	dir, err := os.MkdirTemp("", "keygate-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	binary = filepath.Join(dir, "keygate")
	ldflags := "-X github.com/keygate/keygate/internal/cli.version=" + testVersion
	build := exec.Command(goTool(), "build", "-o", binary, "-ldflags", ldflags, ".")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
		return 1
	}
	return m.Run()
}

// goTool is the go command; go test puts $GOROOT/bin first on PATH.
func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return "go"
}

type result struct {
	out, err string
	code     int
}

// keygate runs the binary with natsURL as KEYGATE_NATS_URL and no other
// KEYGATE_* variables.
func keygate(t *testing.T, natsURL string, args ...string) result {
	t.Helper()
	var env []string
	if natsURL != "" {
		env = append(env, "KEYGATE_NATS_URL="+natsURL)
	}
	return keygateEnv(t, env, args...)
}

// keygateEnv runs the binary with env added to the environment without
// KEYGATE_* variables.
func keygateEnv(t *testing.T, env []string, args ...string) result {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), binary, args...)
	cmd.Env = append(cleanEnv(), env...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	r := result{out: out.String(), err: errOut.String()}
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		r.code = exit.ExitCode()
	case err != nil:
		t.Fatalf("run keygate: %v", err)
	}
	return r
}

func TestVersion(t *testing.T) {
	r := keygate(t, "", "version")
	if r.code != 0 || r.out != "keygate "+testVersion+"\n" {
		t.Errorf("version: exit %d %q %q", r.code, r.out, r.err)
	}
}

func TestKeysEndToEnd(t *testing.T) {
	url := natstest.Run(t).ClientURL()
	r := keygate(t, url, "keys", "create", "--account", "acme", "--scopes", "chat:send", "--json")
	if r.code != 0 {
		t.Fatalf("keys create: exit %d %s", r.code, r.err)
	}
	var created struct {
		ID, Key string
		Scopes  []string
	}
	if err := json.Unmarshal([]byte(r.out), &created); err != nil {
		t.Fatalf("keys create --json: %v in %q", err, r.out)
	}
	if !strings.HasPrefix(created.ID, "key_") || apikey.DefaultFormat().Check(created.Key) != nil {
		t.Fatalf("keys create --json: id %q, key fails the format", created.ID)
	}
	for _, args := range [][]string{{"keys", "get", created.ID, "--json"}, {"keys", "list"}} {
		r := keygate(t, url, args...)
		if r.code != 0 || !strings.Contains(r.out, created.ID) || strings.Contains(r.out, created.Key) {
			t.Errorf("%v: exit %d %s; output has the id and not the key?\n%s", args, r.code, r.err, r.out)
		}
	}
	r = keygate(t, url, "keys", "get", "key_nope")
	if r.code != 1 || r.err != "keygate: key key_nope not found\n" {
		t.Errorf("missing key: exit %d %q", r.code, r.err)
	}
}

func TestBalanceEndToEnd(t *testing.T) {
	url := natstest.Run(t).ClientURL()
	steps := []struct {
		args []string
		code int
		out  string
	}{
		{[]string{"balance", "add", "acme", "-3.25"}, 1, ""},
		{[]string{"balance", "set", "acme", "100"}, 0, "acme: 100.00 MXN\n"},
		{[]string{"balance", "add", "acme", "-3.25"}, 0, "acme: 96.75 MXN\n"},
		{[]string{"balance", "get", "acme"}, 0, "acme: 96.75 MXN\n"},
	}
	for _, s := range steps {
		r := keygate(t, url, s.args...)
		if r.code != s.code || r.out != s.out {
			t.Errorf("%v: exit %d %q %q, want exit %d %q", s.args, r.code, r.out, r.err, s.code, s.out)
		}
	}
}

func TestExitCodes(t *testing.T) {
	tests := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"keys", "create", "--account", "acme", "--bogus"}, 2, "bogus"},
		{[]string{"keys", "create", "--account", "acme", "--rate-limit", "10/x"}, 2, `--rate-limit: "10/x"`},
		{[]string{"balance", "add", "acme", "ten"}, 2, "AMOUNT"},
		{[]string{"frobnicate"}, 2, "unknown command"},
		{[]string{"keys", "list", "--nats-url", "nats://user:pw@127.0.0.1:1"}, 1, "nats://redacted@127.0.0.1:1"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			r := keygate(t, "", tt.args...)
			if r.code != tt.code || !strings.HasPrefix(r.err, "keygate: ") || !strings.Contains(r.err, tt.want) {
				t.Errorf("exit %d %q, want exit %d with %q", r.code, r.err, tt.code, tt.want)
			}
			if strings.Contains(r.err, "pw@") {
				t.Errorf("stderr shows the password: %q", r.err)
			}
		})
	}
}
