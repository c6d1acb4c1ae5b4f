package alerts

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strconv"
	"time"
)

// Headers of a webhook POST.
const (
	// HeaderSignature is "sha256=" and the hex HMAC-SHA256, keyed with
	// the webhook's secret, of the timestamp header's value, ".", and the
	// body.
	HeaderSignature = "X-Keygate-Signature"
	// HeaderTimestamp is when the POST was made, in Unix seconds.
	HeaderTimestamp = "X-Keygate-Timestamp"
	// HeaderID is the alert's id, for receivers that drop a second
	// delivery.
	HeaderID = "X-Keygate-Alert-Id"
)

// Sign is the signature of a POST of body at timestamp ts (Unix seconds,
// as HeaderTimestamp sends it). The timestamp is signed with the body, so
// that a POST replayed later cannot pass for a new one.
func Sign(secret, ts string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(ts))
	m.Write([]byte{'.'})
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// ErrSignature is a POST that did not come from keygate with the secret,
// or came too long ago.
var ErrSignature = errors.New("alert signature does not verify")

// Verify checks a POST as a receiver should: the signature, compared in
// constant time, and a timestamp within window of now.
func Verify(secret, ts, sig string, body []byte, now time.Time, window time.Duration) error {
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return ErrSignature
	}
	if d := now.Sub(time.Unix(sec, 0)); d > window || d < -window {
		return ErrSignature
	}
	if !hmac.Equal([]byte(sig), []byte(Sign(secret, ts, body))) {
		return ErrSignature
	}
	return nil
}
