// Package apikey defines the API key format: minting, parsing, checksums,
// hashing and the masked form used wherever a key must be named.
package apikey

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"strings"
	"unsafe"
)

// Defaults of the key format.
const (
	LivePrefix    = "ghub_sk_live_"
	TestPrefix    = "ghub_sk_test_"
	DefaultLength = 45
	checksumLen   = 6
	maskKeep      = 4
)

const base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// Errors returned by Format.Check. They never contain the key.
var (
	ErrPrefix   = errors.New("unknown key prefix")
	ErrLength   = errors.New("wrong key length")
	ErrCharset  = errors.New("key has characters outside [A-Za-z0-9]")
	ErrChecksum = errors.New("key checksum does not match")
)

// Format describes which strings are well-formed keys.
type Format struct {
	Prefixes []string // accepted prefixes; the first live and test ones mint keys
	Length   int      // total length, prefix included
	Checksum bool     // require the trailing base62 CRC32
}

// DefaultFormat is the format keygate mints and accepts out of the box.
func DefaultFormat() Format {
	return Format{Prefixes: []string{LivePrefix, TestPrefix}, Length: DefaultLength, Checksum: true}
}

// Check reports whether key is well formed. It does no I/O.
func (f Format) Check(key string) error {
	prefix, ok := f.prefixOf(key)
	if !ok {
		return ErrPrefix
	}
	if len(key) != f.Length {
		return ErrLength
	}
	body := key[len(prefix):]
	for i := 0; i < len(body); i++ {
		if !isAlnum(body[i]) {
			return ErrCharset
		}
	}
	if f.Checksum && len(body) > checksumLen {
		n := len(key) - checksumLen
		if sum := checksumOf(key[:n]); key[n:] != string(sum[:]) {
			return ErrChecksum
		}
	}
	return nil
}

// HasPrefix reports whether s starts with an accepted key prefix.
func (f Format) HasPrefix(s string) bool {
	_, ok := f.prefixOf(s)
	return ok
}

func (f Format) prefixOf(key string) (string, bool) {
	for _, p := range f.Prefixes {
		if strings.HasPrefix(key, p) {
			return p, true
		}
	}
	return "", false
}

// Mint returns a new random key with the given prefix, Length long, ending
// in its checksum.
func (f Format) Mint(prefix string) (string, error) {
	n := f.Length - len(prefix) - checksumLen
	if n < 1 {
		return "", fmt.Errorf("prefix %q leaves no room for a %d-character key", prefix, f.Length)
	}
	r, err := randomString(n)
	if err != nil {
		return "", err
	}
	s := prefix + r
	sum := checksumOf(s)
	return s + string(sum[:]), nil
}

// NewID returns a new key id, "key_" and 20 random base62 characters.
func NewID() (string, error) { return NewPrefixedID("key_") }

// NewPrefixedID returns prefix and 20 random base62 characters, an id
// such as an admin token's ("tok_...").
func NewPrefixedID(prefix string) (string, error) {
	r, err := randomString(20)
	if err != nil {
		return "", err
	}
	return prefix + r, nil
}

// Hash returns the hex SHA-256 of key, the only form keygate stores.
func Hash(key string) string {
	var buf HashBuf
	return strings.Clone(buf.Hash(key))
}

// HashBuf holds a key's hash without allocating it, for a lookup that
// does not keep it (a check's cache hit).
type HashBuf [2 * sha256.Size]byte

// Hash writes Hash(key) into b and returns it as a string that is valid
// while b is neither changed nor gone.
func (b *HashBuf) Hash(key string) string {
	sum := sha256.Sum256(bytesOf(key))
	hex.Encode(b[:], sum[:])
	return unsafe.String(&b[0], len(b))
}

// bytesOf views s as bytes without copying; the bytes must not be changed.
func bytesOf(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }

// Mask returns key with its middle hidden: prefix, four characters, "****",
// the last four characters. Anything too short to mask becomes "****".
func (f Format) Mask(key string) string {
	prefix, _ := f.prefixOf(key)
	body := key[len(prefix):]
	if len(body) < 3*maskKeep {
		return "****"
	}
	return prefix + body[:maskKeep] + "****" + body[len(body)-maskKeep:]
}

// checksumOf is the base62 CRC32 of s, six characters.
func checksumOf(s string) [checksumLen]byte {
	v := crc32.ChecksumIEEE(bytesOf(s))
	var b [checksumLen]byte
	for i := checksumLen - 1; i >= 0; i-- {
		b[i] = base62[v%62]
		v /= 62
	}
	return b
}

func randomString(n int) (string, error) {
	b := make([]byte, n)
	// Rejection sampling keeps the characters uniform.
	buf := make([]byte, 1)
	for i := 0; i < n; {
		if _, err := rand.Read(buf); err != nil {
			return "", fmt.Errorf("random: %w", err)
		}
		if buf[0] < 248 { // 248 = 4*62
			b[i] = base62[buf[0]%62]
			i++
		}
	}
	return string(b), nil
}

func isAlnum(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z'
}
