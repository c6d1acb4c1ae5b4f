package leaks

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// When the keys are read again.
const (
	// MinRefresh is the least time between two reads: requests naming
	// keys nobody has heard of cannot make keygate read more often.
	MinRefresh = time.Minute
	// MaxKeyAge is how long keys are used before the next request reads
	// them again (if that read fails, the keys held are kept), so that a
	// key GitHub withdraws stops being trusted.
	MaxKeyAge = time.Hour
	// fetchTimeout bounds one read of KeysURL.
	fetchTimeout = 10 * time.Second
	// maxKeysBody bounds the keys document.
	maxKeysBody = 1 << 20
)

// Why a request's signature is refused.
var (
	ErrUnsigned     = errors.New("the request is not signed: send Github-Public-Key-Identifier and Github-Public-Key-Signature")
	ErrUnknownKey   = errors.New("the request is signed with a key that GitHub does not list")
	ErrBadSignature = errors.New("the signature does not match the body")
)

// Source says where GitHub's public keys are read: File if set, else URL.
type Source struct {
	URL  string
	File string
	// Token, if set, goes to URL as a bearer token.
	Token string
	// Client reads URL; nil is a client with a 10 s timeout.
	Client *http.Client
}

// Keys are GitHub's public keys for secret scanning, read from their
// source when a request first needs them, and again when a request names
// a key not among them or they are older than MaxKeyAge, at most once per
// MinRefresh.
type Keys struct {
	src Source
	now func() time.Time
	log *slog.Logger

	fetches, fetchErrors atomic.Uint64

	fetchMu sync.Mutex // one read at a time; guards lastTry and etag
	lastTry time.Time
	etag    string

	mu      sync.RWMutex
	keys    map[string]*ecdsa.PublicKey // by key_identifier
	fetched time.Time                   // when keys were last read or confirmed
}

// NewKeys returns GitHub's keys from src, read when first needed. now is
// the clock (nil: time.Now).
func NewKeys(src Source, now func() time.Time, log *slog.Logger) *Keys {
	if src.Client == nil {
		src.Client = &http.Client{Timeout: fetchTimeout}
	}
	if now == nil {
		now = time.Now
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Keys{src: src, now: now, log: log}
}

// Verify checks that sig, the base64 ECDSA P-256 SHA-256 signature (ASN.1
// DER) of body, was made with GitHub's key id. It returns ErrUnsigned,
// ErrUnknownKey or ErrBadSignature when it was not.
func (k *Keys) Verify(ctx context.Context, id, sig string, body []byte) error {
	if id == "" || sig == "" {
		return ErrUnsigned
	}
	pub := k.key(ctx, id)
	if pub == nil {
		return ErrUnknownKey
	}
	der, err := base64.StdEncoding.DecodeString(sig)
	if err != nil {
		return ErrBadSignature
	}
	sum := sha256.Sum256(body)
	if !ecdsa.VerifyASN1(pub, sum[:], der) {
		return ErrBadSignature
	}
	return nil
}

// key returns key id, reading the keys again first if id is not among
// them or they are old, and the last read was at least MinRefresh ago.
func (k *Keys) key(ctx context.Context, id string) *ecdsa.PublicKey {
	if pub, fresh := k.held(id); pub != nil && fresh {
		return pub
	}
	k.fetchMu.Lock()
	defer k.fetchMu.Unlock()
	pub, fresh := k.held(id) // another request may have read them meanwhile
	if pub != nil && fresh || !k.lastTry.IsZero() && k.now().Sub(k.lastTry) < MinRefresh {
		return pub
	}
	// Not the request's context: a caller hanging up must not spoil the
	// one read of the minute.
	if err := k.fetch(context.WithoutCancel(ctx)); err != nil {
		k.log.Warn("reading GitHub's secret scanning keys; the keys held are kept", "err", err)
	}
	pub, _ = k.held(id)
	return pub
}

// held returns key id if it is held, and whether the keys are fresh.
func (k *Keys) held(id string) (*ecdsa.PublicKey, bool) {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return k.keys[id], !k.fetched.IsZero() && k.now().Sub(k.fetched) < MaxKeyAge
}

// Refresh reads the keys now, whenever they were last read.
func (k *Keys) Refresh(ctx context.Context) error {
	k.fetchMu.Lock()
	defer k.fetchMu.Unlock()
	return k.fetch(ctx)
}

// Fetches returns how many times the keys were read, and how many of
// those reads failed.
func (k *Keys) Fetches() (total, failed uint64) { return k.fetches.Load(), k.fetchErrors.Load() }

// fetch reads the keys; the caller holds fetchMu.
func (k *Keys) fetch(ctx context.Context) error {
	k.lastTry = k.now()
	k.fetches.Add(1)
	keys, err := k.read(ctx)
	if err != nil {
		k.fetchErrors.Add(1)
		return err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if keys != nil { // nil: not modified since the last read
		k.keys = keys
	}
	k.fetched = k.lastTry
	return nil
}

func (k *Keys) read(ctx context.Context) (map[string]*ecdsa.PublicKey, error) {
	if k.src.File != "" {
		f, err := os.Open(k.src.File)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		return k.parse(f, k.src.File)
	}
	ctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, k.src.URL, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	if k.src.Token != "" {
		req.Header.Set("Authorization", "Bearer "+k.src.Token)
	}
	if k.etag != "" && k.keys != nil {
		req.Header.Set("If-None-Match", k.etag)
	}
	resp, err := k.src.Client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotModified:
		return nil, nil
	default:
		return nil, fmt.Errorf("GET %s: %s", k.src.URL, resp.Status)
	}
	keys, err := k.parse(resp.Body, k.src.URL)
	if err == nil {
		k.etag = resp.Header.Get("ETag")
	}
	return keys, err
}

// keyList is the JSON of GitHub's keys.
type keyList struct {
	PublicKeys []struct {
		KeyIdentifier string `json:"key_identifier"`
		Key           string `json:"key"`
	} `json:"public_keys"`
}

// parse reads a key list from r (read from where). A key it cannot use
// (not an ECDSA P-256 key in PEM) is left out and logged; a list without
// a key it can use is an error.
func (k *Keys) parse(r io.Reader, where string) (map[string]*ecdsa.PublicKey, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxKeysBody+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	if len(b) > maxKeysBody {
		return nil, fmt.Errorf("%s: longer than %d bytes", where, maxKeysBody)
	}
	var list keyList
	if err := json.Unmarshal(b, &list); err != nil {
		return nil, fmt.Errorf(`%s: not JSON like {"public_keys": [{"key_identifier": "...", "key": "-----BEGIN PUBLIC KEY-----..."}]}: %w`, where, err)
	}
	keys := make(map[string]*ecdsa.PublicKey, len(list.PublicKeys))
	for i, e := range list.PublicKeys {
		pub, err := parseKey(e.Key)
		if err == nil && e.KeyIdentifier == "" {
			err = errors.New("no key_identifier")
		}
		if err != nil {
			k.log.Warn("a secret scanning key is left out", "source", where, "index", i, "err", err)
			continue
		}
		keys[e.KeyIdentifier] = pub
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("%s: no ECDSA P-256 key in public_keys", where)
	}
	return keys, nil
}

func parseKey(s string) (*ecdsa.PublicKey, error) {
	block, _ := pem.Decode([]byte(s))
	if block == nil {
		return nil, errors.New("key is not PEM")
	}
	pub, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, err
	}
	ec, ok := pub.(*ecdsa.PublicKey)
	if !ok || ec.Curve != elliptic.P256() {
		return nil, errors.New("key is not ECDSA P-256")
	}
	return ec, nil
}
