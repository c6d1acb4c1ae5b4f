package main

import (
	"bytes"
	"encoding/json"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/natstest"

	"github.com/keygate/keygate/internal/poll"
)

// TestStartupFailuresNameTheirCause: keygate serve fails within 2 s, exit
// 1, with a message naming the setting at fault.
func TestStartupFailuresNameTheirCause(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	taken := busy.Addr().String()
	natsURL := natstest.Run(t).ClientURL()
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"busy embedded NATS address", []string{"--nats-listen", taken}, "nats.listen"},
		{"unbindable embedded NATS address", []string{"--nats-listen", "192.0.2.1:4222"}, "nats.listen"},
		{"unwritable data dir", []string{"--data-dir", "/dev/null/keygate"}, "nats.data_dir"},
		{"NATS URL that refuses", []string{"--nats-url", "nats://127.0.0.1:1"}, "nats.url nats://127.0.0.1:1"},
		{"busy gRPC address", []string{"--nats-url", natsURL, "--grpc-addr", taken}, "grpc_addr"},
		{"busy admin address", []string{"--nats-url", natsURL, "--admin-addr", taken}, "admin_addr"},
		{"busy HTTP address", []string{"--nats-url", natsURL, "--http-addr", taken}, "http_addr"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			args := append([]string{"serve", "--grpc-addr", freeAddr(t), "--admin-addr", freeAddr(t),
				"--nats-listen", freeAddr(t), "--data-dir", t.TempDir()}, c.args...)
			begin := time.Now()
			r := keygateEnv(t, []string{"XDG_CONFIG_HOME=" + t.TempDir()}, args...)
			took := time.Since(begin)
			last := lastLine(r.err)
			if r.code != 1 || !strings.HasPrefix(last, "keygate: "+c.want) {
				t.Errorf("exit %d, last line %q, want one starting %q", r.code, last, "keygate: "+c.want)
			}
			if took > 2*time.Second {
				t.Errorf("took %s to fail", took)
			}
		})
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// TestLogsAreJSON: every line keygate writes is JSON, the embedded NATS
// server's included, also through a NATS outage and reconnect.
func TestLogsAreJSON(t *testing.T) {
	home := "XDG_CONFIG_HOME=" + t.TempDir()
	natsAddr, dataDir := freeAddr(t), t.TempDir()
	embedded := startServe(t, []string{home}, "--nats-listen", natsAddr, "--data-dir", dataDir)
	client := startServe(t, []string{home}, "--nats-url", "nats://"+natsAddr)
	_ = embedded.cmd.Process.Kill() // an outage for the second
	_ = embedded.cmd.Wait()
	poll.Until(t, 30*time.Second, "not ready", func() bool { return ready(client.admin) == http.StatusServiceUnavailable })
	restarted := startServe(t, []string{home}, "--nats-listen", natsAddr, "--data-dir", dataDir)
	poll.Until(t, 30*time.Second, "ready", func() bool { return ready(client.admin) == http.StatusOK })
	client.stop(t)
	restarted.stop(t)
	for _, p := range []*served{embedded, client, restarted} {
		for _, line := range strings.Split(strings.TrimSpace(p.log()), "\n") {
			if !json.Valid([]byte(line)) {
				t.Errorf("not JSON: %q", line)
			}
		}
	}
	for _, want := range []string{`"component":"nats-server"`, `"msg":"keygate ready"`, `"embedded_nats_addr":"` + natsAddr} {
		if !strings.Contains(restarted.log(), want) {
			t.Errorf("the embedded server's log lacks %s", want)
		}
	}
	for _, want := range []string{`"msg":"nats disconnected"`, `"msg":"nats reconnected"`, `"nats_url":"nats://` + natsAddr} {
		if !strings.Contains(client.log(), want) {
			t.Errorf("the client's log lacks %s", want)
		}
	}
}

// served is a running keygate serve.
type served struct {
	cmd   *exec.Cmd
	admin string
	grpc  string
	mu    sync.Mutex
	buf   bytes.Buffer
}

func (s *served) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *served) log() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

// startServe runs keygate serve at debug level with env and args and
// waits until it is ready.
func startServe(t *testing.T, env []string, args ...string) *served {
	t.Helper()
	s := &served{admin: freeAddr(t), grpc: freeAddr(t)}
	s.cmd = exec.Command(binary, append([]string{"serve", "--grpc-addr", s.grpc, "--admin-addr", s.admin}, args...)...)
	s.cmd.Env = append(cleanEnv(), append(env, "KEYGATE_LOG_LEVEL=debug", "KEYGATE_SHUTDOWN_DELAY=0s")...)
	s.cmd.Stderr = s
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.cmd.Process.Kill() })
	poll.Until(t, 30*time.Second, "ready", func() bool { return ready(s.admin) == http.StatusOK })
	return s
}

func (s *served) stop(t *testing.T) {
	t.Helper()
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	if err := s.cmd.Wait(); err != nil {
		t.Errorf("keygate exited with %v\n%s", err, s.log())
	}
}

// TestOneServePerDataDir: a second keygate serve on the data directory of
// a running one exits 1 at once with a line naming the directory; once the
// first is killed (kill -9), a new one starts on it.
func TestOneServePerDataDir(t *testing.T) {
	dataDir, natsAddr := t.TempDir(), freeAddr(t)
	home := []string{"XDG_CONFIG_HOME=" + t.TempDir()}
	first := startServe(t, home, "--nats-listen", natsAddr, "--data-dir", dataDir)
	begin := time.Now()
	r := keygateEnv(t, home, "serve", "--grpc-addr", freeAddr(t), "--admin-addr", freeAddr(t),
		"--nats-listen", freeAddr(t), "--data-dir", dataDir)
	took := time.Since(begin)
	want := "keygate: nats.data_dir " + dataDir + ": another keygate serve is using this data directory"
	if r.code != 1 || !strings.HasPrefix(lastLine(r.err), want) {
		t.Errorf("second keygate serve: exit %d, last line %q, want one starting %q", r.code, lastLine(r.err), want)
	}
	if took > 2*time.Second {
		t.Errorf("took %s to fail", took)
	}
	if err := first.cmd.Process.Kill(); err != nil { // SIGKILL: no clean-up of its own
		t.Fatal(err)
	}
	_ = first.cmd.Wait()
	restarted := startServe(t, home, "--nats-listen", natsAddr, "--data-dir", dataDir)
	restarted.stop(t)
}
