package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// rawAnswer sends request as written and returns the response and its
// body.
func rawAnswer(t *testing.T, ng *nginx, request string) (*http.Response, string) {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(ng.base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, request); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// testMeterRaw sends what the SDKs do not: reservation ids in other
// spellings, bodies keygate refuses to read (encoded, of two types), a
// client's own X-Original-Content-Length, and bodies over 1 MiB, chunked
// or not, to an endpoint keygate does not meter, for a key limited to
// some models.
func testMeterRaw(t *testing.T, kg *keygate, ng *nginx, be *backend, m meterKeys) {
	limited, limitedRec := kg.createKey(t, keyOpts{account: metered, test: true, models: []string{"gpt-4o*"}})
	chat := `{"model":"gpt-4o","max_tokens":5,"messages":[{"role":"user","content":"hello"}]}`
	live, test, lim := identityOf(m.liveRec), identityOf(m.testRec), identityOf(limitedRec)
	live.reserved = true
	// A JSON body over 1 MiB naming a model the key may not call: keygate
	// never reads it, since nginx keeps it in a file.
	padded := `{"model":"dall-e-3",` + strings.Repeat(" ", 2<<20) + `"prompt":"a cat"}`
	request := func(method, path, key, call string, headers []string, body string) string {
		s := method + " " + path + " HTTP/1.1\r\nHost: api.example\r\nAuthorization: Bearer " + key + "\r\nX-E2E-Call: " + call + "\r\n"
		for _, h := range headers {
			s += h + "\r\n"
		}
		return s + "Content-Length: " + strconv.Itoa(len(body)) + "\r\nConnection: close\r\n\r\n" + body
	}
	chunked := func(path, key, call, body string) string {
		s := "POST " + path + " HTTP/1.1\r\nHost: api.example\r\nAuthorization: Bearer " + key + "\r\nX-E2E-Call: " + call + "\r\n" +
			"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
		for len(body) > 0 {
			n := min(len(body), 300_000)
			s += fmt.Sprintf("%x\r\n%s\r\n", n, body[:n])
			body = body[n:]
		}
		return s + "0\r\n\r\n"
	}
	spellings := []string{"Content-Type: application/json", "x-keygate-reservation-id: " + forgedReservation,
		"X-KEYGATE-RESERVATION-ID: res_forged2", "X_Keygate_Reservation_Id: res_forged3", "X.Keygate.Reservation.Id: res_forged4"}
	for _, c := range []struct {
		name, request string
		status        int
		code          string
		who           *identity
	}{
		{"forged reservation spellings", request("POST", "/v1/chat/completions", m.live, "raw-meter-forged", spellings, chat), 200, "", &live},
		{"forged reservation spellings, test key", request("POST", "/v1/chat/completions", m.test, "raw-meter-forged-test", spellings, chat), 200, "", &test},
		// nginx replaces it: keygate reads the body it was sent.
		{"client's X-Original-Content-Length", request("POST", "/v1/chat/completions", m.live, "raw-meter-original-length",
			[]string{"Content-Type: application/json", "X-Original-Content-Length: 99999999"}, chat), 200, "", &live},
		{"content encoding", request("POST", "/v1/chat/completions", m.live, "raw-meter-gzip",
			[]string{"Content-Type: application/json", "Content-Encoding: gzip"}, "\x1f\x8b\x08\x00"), 415, "unsupported_content_encoding", nil},
		{"two content types", request("POST", "/v1/chat/completions", m.live, "raw-meter-two-types",
			[]string{"Content-Type: application/json", "Content-Type: text/plain"}, chat), 400, "ambiguous_request", nil},
		{"not JSON", request("POST", "/v1/chat/completions", m.live, "raw-meter-form",
			[]string{"Content-Type: application/x-www-form-urlencoded"}, "model=gpt-4o"), 415, "unsupported_media_type", nil},
		{"chunked, over 1 MiB", chunked("/v1/chat/completions", m.live, "raw-meter-chunked-large",
			`{"model":"gpt-4o","messages":[{"role":"user","content":"`+strings.Repeat("x", 2<<20)+`"}]}`), 413, "request_too_large", nil},
		{"model limit, other endpoint", request("POST", "/v1/images/generations", limited, "raw-meter-images",
			[]string{"Content-Type: application/json"}, `{"model":"dall-e-3","prompt":"a cat"}`), 403, "model_not_found", nil},
		{"model limit, other endpoint, allowed", request("POST", "/v1/images/generations", limited, "raw-meter-images-allowed",
			[]string{"Content-Type: application/json"}, `{"model":"gpt-4o-image","prompt":"a cat"}`), 200, "", &lim},
		{"model limit, other endpoint, over 1 MiB", request("POST", "/v1/images/generations", limited, "raw-meter-images-large",
			[]string{"Content-Type: application/json"}, padded), 413, "request_too_large", nil},
		{"model limit, other endpoint, chunked over 1 MiB", chunked("/v1/images/generations", limited, "raw-meter-images-chunked", padded),
			413, "request_too_large", nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			resp, body := rawAnswer(t, ng, c.request)
			if resp.StatusCode != c.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, c.status, body)
			}
			call := c.request[strings.Index(c.request, "X-E2E-Call: ")+len("X-E2E-Call: "):]
			call = call[:strings.IndexByte(call, '\r')]
			reqs := be.requests(call)
			if c.status != 200 {
				var e openAIError
				if err := json.Unmarshal([]byte(body), &e); err != nil || e.Error.Message == nil || *e.Error.Message == "" ||
					e.Error.Type == nil || *e.Error.Type != "invalid_request_error" || e.Error.Code == nil || *e.Error.Code != c.code ||
					resp.Header.Get("Content-Type") != "application/json" {
					t.Errorf("answer %v %s, want OpenAI's error shape with code %s", resp.Header, body, c.code)
				}
				if resp.Header.Get("X-Should-Retry") != "false" {
					t.Errorf("x-should-retry %q, want false", resp.Header.Get("X-Should-Retry"))
				}
				if len(reqs) != 0 {
					t.Errorf("a denied request reached the backend")
				}
				return
			}
			if len(reqs) != 1 {
				t.Fatalf("the backend got %d requests", len(reqs))
			}
			checkUpstream(t, reqs[0], c.who)
		})
	}
}
