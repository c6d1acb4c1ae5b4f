package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
)

// openAIError is OpenAI's error body, as the SDKs read it.
type openAIError struct {
	Error struct {
		Message *string `json:"message"`
		Type    *string `json:"type"`
		Param   any     `json:"param"`
		Code    *string `json:"code"`
	} `json:"error"`
}

// checkErrorBody fails unless body is OpenAI's error shape with typ and code.
func checkErrorBody(t *testing.T, contentType, body, typ, code string) {
	t.Helper()
	var e openAIError
	dec := json.NewDecoder(strings.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil || e.Error.Message == nil || *e.Error.Message == "" || e.Error.Param != nil ||
		e.Error.Type == nil || *e.Error.Type != typ || e.Error.Code == nil || *e.Error.Code != code {
		t.Errorf("body %q (%v), want OpenAI's error shape with type %s and code %s", body, err, typ, code)
	}
	if contentType != "application/json" {
		t.Errorf("content-type %q, want application/json", contentType)
	}
}

// bodyLimit returns client_max_body_size from the shipped keygate.conf, in
// bytes.
func bodyLimit(t *testing.T) int {
	t.Helper()
	conf, err := os.ReadFile(shippedConf)
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^\s*client_max_body_size (\d+)m;`).FindSubmatch(conf)
	if m == nil {
		t.Fatalf("%s: no client_max_body_size in megabytes", shippedConf)
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n << 20
}

// openAIAudioLimit is the largest audio file OpenAI's transcription
// endpoint accepts: 25 MB.
const openAIAudioLimit = 25 << 20

// TestNginxErrorsAreJSON: what nginx answers itself is JSON in OpenAI's
// error shape, which both SDKs read: a body over client_max_body_size (at
// least OpenAI's 25 MB audio uploads get through) and a backend nginx
// cannot reach.
func TestNginxErrorsAreJSON(t *testing.T) {
	nginxBinary(t)
	nodeBin := nodeBinary(t)
	kg := startKeygate(t, "nginx")
	be := startBackend(t)
	ng := startNginx(t, kg.inst.HTTPAddr.String(), be.addr())
	kg.setAccount(t, "acme", 100000, nil)
	key, _ := kg.createKey(t, keyOpts{account: "acme", scopes: []string{"*"}})

	limit := bodyLimit(t)
	if limit < openAIAudioLimit+1<<20 {
		t.Fatalf("client_max_body_size is %d bytes: a 25 MB audio file and its form fields must fit", limit)
	}
	over := limit + 1<<20
	mib := fmt.Sprintf("%d MiB", limit>>20)

	t.Run("413 message", func(t *testing.T) {
		conf, _ := os.ReadFile(shippedConf)
		if !strings.Contains(string(conf), "is over the "+mib+" this API accepts") {
			t.Errorf("the 413 message does not name client_max_body_size (%s)", mib)
		}
	})

	t.Run("go", func(t *testing.T) {
		client := openai.NewClient(option.WithBaseURL(ng.base+"/v1/"), option.WithAPIKey(key), option.WithRequestTimeout(30*time.Second))
		transcribe := func(call string, size int) (*openai.AudioTranscriptionNewResponseUnion, error) {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			return client.Audio.Transcriptions.New(ctx, openai.AudioTranscriptionNewParams{
				Model: openai.AudioModelGPTTranscribe,
				File:  openai.File(bytes.NewReader(make([]byte, size)), "audio.mp3", "audio/mpeg"),
			}, option.WithHeader("X-E2E-Call", call))
		}
		tr, err := transcribe("go-audio-25mb", openAIAudioLimit)
		if err != nil || !strings.HasPrefix(tr.Text, "bytes=") {
			t.Fatalf("a 25 MB upload: %v %+v", err, tr)
		}
		if n, _ := strconv.Atoi(strings.TrimPrefix(tr.Text, "bytes=")); n < openAIAudioLimit {
			t.Errorf("the backend got %d bytes", n)
		}
		_, err = transcribe("go-audio-too-large", over)
		var apiErr *openai.Error
		if !errors.As(err, &apiErr) || apiErr.StatusCode != 413 || apiErr.Code != "request_too_large" ||
			apiErr.Type != "invalid_request_error" || !strings.Contains(apiErr.Message, mib) {
			t.Fatalf("an upload over the limit: %v", err)
		}
		if got := ng.statuses(t, "go-audio-too-large", 1); fmt.Sprint(got) != "[413]" {
			t.Errorf("nginx answered %v, want one 413 (no retry)", got)
		}
	})

	t.Run("node", func(t *testing.T) {
		res := runNode(t, nodeBin, ng.base+"/v1", []nodeCall{
			{ID: "node-audio-25mb", Op: "transcribe", Key: key, Size: openAIAudioLimit},
			{ID: "node-audio-too-large", Op: "transcribe", Key: key, Size: over},
		})
		if !res[0].OK || !strings.HasPrefix(res[0].Content, "bytes=") {
			t.Errorf("a 25 MB upload: %+v", res[0])
		}
		e := res[1].Error
		if e == nil || e.Status != 413 || e.Code != "request_too_large" || e.Type != "invalid_request_error" ||
			!strings.Contains(e.Message, mib) || len(e.Classes) == 0 || e.Classes[0] != "APIError" {
			t.Errorf("an upload over the limit: %+v", res[1])
		}
		if got := ng.statuses(t, "node-audio-too-large", 1); fmt.Sprint(got) != "[413]" {
			t.Errorf("nginx answered %v, want one 413 (no retry)", got)
		}
	})

	// Read as it comes (chunked), the body is counted as it arrives.
	t.Run("chunked", func(t *testing.T) {
		pr, pw := io.Pipe()
		go func() {
			chunk := make([]byte, 1<<20)
			for sent := 0; sent < over; sent += len(chunk) {
				if _, err := pw.Write(chunk); err != nil {
					return
				}
			}
			pw.Close()
		}()
		req, _ := http.NewRequest(http.MethodPost, ng.base+"/v1/audio/transcriptions", pr)
		req.Header.Set("Authorization", "Bearer "+key)
		req.Header.Set("X-E2E-Call", "raw-chunked-too-large")
		resp, err := http.DefaultClient.Do(req)
		pr.CloseWithError(io.ErrClosedPipe)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 413 || resp.Header.Get("X-Should-Retry") != "false" {
			t.Errorf("status %d %v", resp.StatusCode, resp.Header)
		}
		checkErrorBody(t, resp.Header.Get("Content-Type"), string(body), "invalid_request_error", "request_too_large")
	})

	for _, call := range []string{"go-audio-too-large", "node-audio-too-large", "raw-chunked-too-large"} {
		if n := len(be.requests(call)); n != 0 {
			t.Errorf("%s: the backend got %d requests", call, n)
		}
	}

	// A backend nginx cannot reach.
	t.Run("backend down", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		nobody := l.Addr().String()
		l.Close()
		down := startNginx(t, kg.inst.HTTPAddr.String(), nobody)
		req, _ := http.NewRequest(http.MethodGet, down.base+"/v1/models", nil)
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 502 {
			t.Errorf("status %d", resp.StatusCode)
		}
		checkErrorBody(t, resp.Header.Get("Content-Type"), string(body), "server_error", "backend_unavailable")
		client := openai.NewClient(option.WithBaseURL(down.base+"/v1/"), option.WithAPIKey(key), option.WithMaxRetries(0))
		_, err = client.Models.List(context.Background())
		var apiErr *openai.Error
		if !errors.As(err, &apiErr) || apiErr.StatusCode != 502 || apiErr.Code != "backend_unavailable" {
			t.Errorf("the Go SDK read %v", err)
		}
	})
}
