package apikey_test

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"hash/crc32"
	"regexp"
	"strings"
	"testing"

	"github.com/keygate/keygate/internal/apikey"
)

const alnum = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// withChecksum appends the 6-character checksum to s, written here from the
// spec ("base62 CRC32 of the rest", most significant digit first, zero
// padded) rather than taken from the package, so that the two agree on the
// documented format.
func withChecksum(s string) string {
	v := crc32.ChecksumIEEE([]byte(s))
	var b [6]byte
	for i := len(b) - 1; i >= 0; i-- {
		b[i] = alnum[v%62]
		v /= 62
	}
	return s + string(b[:])
}

// body26 is 26 characters: a 45-character key once a 13-character prefix
// and the checksum are added.
const body26 = "abcdEFGH0123ijklMNOP4567qr"

// mint returns a fresh key or fails the test.
func mint(t testing.TB, f apikey.Format, prefix string) string {
	t.Helper()
	k, err := f.Mint(prefix)
	if err != nil {
		t.Fatalf("Mint(%q): %v", prefix, err)
	}
	return k
}

var keyShape = regexp.MustCompile(`^ghub_sk_(live|test)_[A-Za-z0-9]{32}$`)

func TestMintCheck(t *testing.T) {
	f := apikey.DefaultFormat()
	if apikey.DefaultLength != 45 || f.Length != 45 || !f.Checksum {
		t.Fatalf("DefaultFormat = %+v, want length 45 with checksum", f)
	}
	for _, prefix := range []string{apikey.LivePrefix, apikey.TestPrefix} {
		t.Run(prefix, func(t *testing.T) {
			seen := map[string]bool{}
			for range 200 {
				k := mint(t, f, prefix)
				if len(k) != 45 {
					t.Fatalf("len(%s) = %d, want 45", f.Mask(k), len(k))
				}
				if !strings.HasPrefix(k, prefix) || !keyShape.MatchString(k) {
					t.Fatalf("minted key %s does not have the documented shape", f.Mask(k))
				}
				if err := f.Check(k); err != nil {
					t.Fatalf("Check(minted %s) = %v", f.Mask(k), err)
				}
				if got := withChecksum(k[:39]); got != k {
					t.Fatalf("minted key %s does not end in the base62 CRC32 of the rest", f.Mask(k))
				}
				if seen[k] {
					t.Fatalf("Mint returned %s twice", f.Mask(k))
				}
				seen[k] = true
			}
		})
	}
}

func TestMintCustomFormat(t *testing.T) {
	tests := []struct {
		name    string
		format  apikey.Format
		prefix  string
		wantErr bool
	}{
		{"short custom key", apikey.Format{Prefixes: []string{"kg_"}, Length: 30, Checksum: true}, "kg_", false},
		{"long custom key", apikey.Format{Prefixes: []string{"acme_live_"}, Length: 64, Checksum: true}, "acme_live_", false},
		{"no room after prefix", apikey.Format{Prefixes: []string{apikey.LivePrefix}, Length: 19, Checksum: true}, apikey.LivePrefix, true},
		{"one character of randomness", apikey.Format{Prefixes: []string{"p_"}, Length: 9, Checksum: true}, "p_", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			k, err := tc.format.Mint(tc.prefix)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("Mint = %q, want an error", k)
				}
				return
			}
			if err != nil {
				t.Fatalf("Mint: %v", err)
			}
			if len(k) != tc.format.Length {
				t.Fatalf("len = %d, want %d", len(k), tc.format.Length)
			}
			if err := tc.format.Check(k); err != nil {
				t.Fatalf("Check(minted) = %v", err)
			}
		})
	}
}

func TestCheck(t *testing.T) {
	valid := withChecksum(apikey.LivePrefix + body26)
	validTest := withChecksum(apikey.TestPrefix + body26)
	noSum := apikey.LivePrefix + body26 + "ZZZZZZ" // well formed, wrong checksum
	strict := apikey.DefaultFormat()
	lax := apikey.DefaultFormat()
	lax.Checksum = false

	tests := []struct {
		name      string
		key       string
		strictErr error // with Checksum on (the default)
		laxErr    error // with Checksum off
	}{
		{"valid live", valid, nil, nil},
		{"valid test", validTest, nil, nil},
		{"no checksum", noSum, apikey.ErrChecksum, nil},
		{"empty", "", apikey.ErrPrefix, apikey.ErrPrefix},
		{"prefix only", apikey.LivePrefix, apikey.ErrLength, apikey.ErrLength},
		{"unknown prefix", "ghub_sk_prod_" + valid[13:], apikey.ErrPrefix, apikey.ErrPrefix},
		{"openai key", "sk-proj-" + strings.Repeat("a", 37), apikey.ErrPrefix, apikey.ErrPrefix},
		{"prefix in upper case", strings.ToUpper(valid[:13]) + valid[13:], apikey.ErrPrefix, apikey.ErrPrefix},
		{"leading space", " " + valid[:44], apikey.ErrPrefix, apikey.ErrPrefix},
		{"one short", valid[:44], apikey.ErrLength, apikey.ErrLength},
		{"one long", valid + "a", apikey.ErrLength, apikey.ErrLength},
		{"twice", valid + valid, apikey.ErrLength, apikey.ErrLength},
		{"trailing newline", valid[:44] + "\n", apikey.ErrCharset, apikey.ErrCharset},
		{"underscore in body", valid[:20] + "_" + valid[21:], apikey.ErrCharset, apikey.ErrCharset},
		{"dash in body", valid[:30] + "-" + valid[31:], apikey.ErrCharset, apikey.ErrCharset},
		{"space in body", valid[:30] + " " + valid[31:], apikey.ErrCharset, apikey.ErrCharset},
		{"NUL in body", valid[:30] + "\x00" + valid[31:], apikey.ErrCharset, apikey.ErrCharset},
		{"non-ASCII letter", valid[:43] + "é", apikey.ErrCharset, apikey.ErrCharset},
		{"invalid UTF-8", valid[:44] + "\xff", apikey.ErrCharset, apikey.ErrCharset},
		{"non-ASCII changes the length", valid[:44] + "é", apikey.ErrLength, apikey.ErrLength},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := strict.Check(tc.key); !errors.Is(err, tc.strictErr) || (err == nil) != (tc.strictErr == nil) {
				t.Errorf("Check with checksum = %v, want %v", err, tc.strictErr)
			}
			if err := lax.Check(tc.key); !errors.Is(err, tc.laxErr) || (err == nil) != (tc.laxErr == nil) {
				t.Errorf("Check without checksum = %v, want %v", err, tc.laxErr)
			}
		})
	}
}

// Every one-character typo or adjacent transposition in a minted key is
// caught by the checksum (CRC32 detects every burst of up to 32 bits).
func TestCheckTypos(t *testing.T) {
	f := apikey.DefaultFormat()
	for _, prefix := range []string{apikey.LivePrefix, apikey.TestPrefix} {
		k := mint(t, f, prefix)
		for i := len(prefix); i < len(k); i++ {
			for _, c := range []byte{'0', 'a', 'Z', k[i] ^ 0x20} { // ^0x20 flips the case of a letter
				if c == k[i] || !strings.ContainsRune(alnum, rune(c)) {
					continue
				}
				typo := k[:i] + string(c) + k[i+1:]
				if err := f.Check(typo); !errors.Is(err, apikey.ErrChecksum) {
					t.Errorf("typo at %d (%q -> %q): Check = %v, want ErrChecksum", i, k[i], c, err)
				}
			}
			if i+1 < len(k) && k[i] != k[i+1] {
				swap := k[:i] + string(k[i+1]) + string(k[i]) + k[i+2:]
				if err := f.Check(swap); !errors.Is(err, apikey.ErrChecksum) {
					t.Errorf("transposition at %d: Check = %v, want ErrChecksum", i, err)
				}
			}
		}
		// A typo in the prefix makes it another prefix.
		if err := f.Check("ghub_sk_lave_" + k[13:]); !errors.Is(err, apikey.ErrPrefix) {
			t.Errorf("typo in prefix: Check = %v, want ErrPrefix", err)
		}
	}
}

func TestCheckErrorsNeverCarryTheKey(t *testing.T) {
	f := apikey.DefaultFormat()
	// A random key, and one ending in 'A', the character the altered key
	// would otherwise end in (1 key in 62).
	keys := []string{mint(t, f, apikey.LivePrefix)}
	for k := mint(t, f, apikey.LivePrefix); ; k = mint(t, f, apikey.LivePrefix) {
		if strings.HasSuffix(k, "A") {
			keys = append(keys, k)
			break
		}
	}
	for _, k := range keys {
		last := "A" // another last character: the checksum no longer matches
		if k[44] == 'A' {
			last = "B"
		}
		for _, bad := range []string{k[:44] + "-", k[:44], k[:44] + last, "x" + k[1:]} {
			if bad == k {
				t.Fatalf("the altered key %s equals the key", f.Mask(bad))
			}
			if err := f.Check(bad); err == nil || strings.Contains(err.Error(), bad[13:40]) {
				t.Errorf("Check error %v: want an error without the key", err)
			}
		}
	}
}

func TestMask(t *testing.T) {
	f := apikey.DefaultFormat()
	tests := []struct {
		name, key, want string
	}{
		{"live key", withChecksum(apikey.LivePrefix + body26), ""},
		{"test key", withChecksum(apikey.TestPrefix + body26), ""},
		{"spec example", "ghub_sk_live_ab12" + strings.Repeat("x", 24) + "wxyz", "ghub_sk_live_ab12****wxyz"},
		{"unknown prefix", "sk-proj-abcdefghijklmnopqrstuvwxyz", "sk-p****wxyz"},
		{"empty", "", "****"},
		{"tiny", "abc", "****"},
		{"eleven", "abcdefghijk", "****"},
		{"prefix only", apikey.LivePrefix, "****"},
		{"prefix and a little", apikey.LivePrefix + "abcdefghijk", "****"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := f.Mask(tc.key)
			want := tc.want
			if want == "" { // a 45-character key
				want = tc.key[:17] + "****" + tc.key[41:]
				if len(got) != 25 || !strings.HasPrefix(got, tc.key[:13]) {
					t.Errorf("Mask = %q, want prefix + 4 + **** + 4", got)
				}
			}
			if got != want {
				t.Errorf("Mask(%q) = %q, want %q", tc.key, got, want)
			}
			if tc.key != "" && len(tc.key) >= 12 && got == tc.key {
				t.Errorf("Mask returned the key unchanged")
			}
			if len(tc.key) >= 25 && strings.Contains(got, tc.key[17:len(tc.key)-4]) {
				t.Errorf("Mask(%q) = %q shows the middle of the key", tc.key, got)
			}
		})
	}
}

func TestHash(t *testing.T) {
	hexRE := regexp.MustCompile(`^[0-9a-f]{64}$`)
	k1 := withChecksum(apikey.LivePrefix + body26)
	k2 := k1[:44] + "x"
	tests := []struct{ key, want string }{
		{"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
		{"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
		{k1, ""},
		{k2, ""},
	}
	seen := map[string]string{}
	for _, tc := range tests {
		got := apikey.Hash(tc.key)
		if !hexRE.MatchString(got) {
			t.Errorf("Hash(%q) = %q, want 64 lowercase hex digits", tc.key, got)
		}
		want := tc.want
		if want == "" {
			sum := sha256.Sum256([]byte(tc.key))
			want = hex.EncodeToString(sum[:])
		}
		if got != want {
			t.Errorf("Hash(%q) = %q, want %q", tc.key, got, want)
		}
		if got != apikey.Hash(tc.key) {
			t.Errorf("Hash(%q) is not deterministic", tc.key)
		}
		if prev, dup := seen[got]; dup {
			t.Errorf("Hash(%q) == Hash(%q)", tc.key, prev)
		}
		seen[got] = tc.key
		if tc.key != "" && strings.Contains(got, tc.key) {
			t.Errorf("Hash(%q) contains the key", tc.key)
		}
	}
}

func TestNewID(t *testing.T) {
	idRE := regexp.MustCompile(`^key_[0-9A-Za-z]{20}$`)
	seen := map[string]bool{}
	for range 1000 {
		id, err := apikey.NewID()
		if err != nil {
			t.Fatalf("NewID: %v", err)
		}
		if !idRE.MatchString(id) {
			t.Fatalf("NewID = %q, want key_ and 20 base62 characters", id)
		}
		if seen[id] {
			t.Fatalf("NewID returned %q twice", id)
		}
		seen[id] = true
	}
}

// FuzzCheck checks, for any input: Check and Mask do not panic; whatever
// Check accepts has the documented shape; Mask never reveals the part of a
// key it is meant to hide.
func FuzzCheck(f *testing.F) {
	strict := apikey.DefaultFormat()
	lax := apikey.DefaultFormat()
	lax.Checksum = false

	valid := withChecksum(apikey.LivePrefix + body26)
	for _, s := range []string{
		valid,
		withChecksum(apikey.TestPrefix + body26),
		mint(f, strict, apikey.LivePrefix),
		mint(f, strict, apikey.TestPrefix),
		valid[:20] + "X" + valid[21:], // typo
		valid[:20] + string(valid[21]) + string(valid[20]) + valid[22:], // transposition
		valid[:44] + "-",
		valid[:44],
		valid + "a",
		"ghub_sk_prod_" + valid[13:],
		apikey.LivePrefix + body26 + "000000",
		"",
		apikey.LivePrefix,
		"Bearer " + valid,
		"abcd****efgh",
		strings.Repeat("a", 64<<10),
		apikey.LivePrefix + strings.Repeat("\xff", 32),
		"\xff\xfe\xfd" + valid,
		apikey.LivePrefix + strings.Repeat("é", 16),
		"ghub_sk_live_aaaaghub_sk_live_aaaaaaa",
	} {
		f.Add(s)
	}

	f.Fuzz(func(t *testing.T, x string) {
		for _, fm := range []apikey.Format{strict, lax} {
			err := fm.Check(x)
			switch {
			case err == nil:
				if !strings.HasPrefix(x, apikey.LivePrefix) && !strings.HasPrefix(x, apikey.TestPrefix) {
					t.Fatalf("Check(%q) = nil without an accepted prefix", x)
				}
				if len(x) != 45 {
					t.Fatalf("Check(%q) = nil with length %d", x, len(x))
				}
				for i := 13; i < len(x); i++ {
					if !strings.ContainsRune(alnum, rune(x[i])) {
						t.Fatalf("Check(%q) = nil with %q at %d", x, x[i], i)
					}
				}
				if fm.Checksum && withChecksum(x[:39]) != x {
					t.Fatalf("Check(%q) = nil with a wrong checksum", x)
				}
			case errors.Is(err, apikey.ErrPrefix), errors.Is(err, apikey.ErrLength),
				errors.Is(err, apikey.ErrCharset), errors.Is(err, apikey.ErrChecksum):
				if fm.Checksum && lax.Check(x) != nil && errors.Is(err, apikey.ErrChecksum) {
					t.Fatalf("Check(%q): ErrChecksum for a key that is malformed anyway", x)
				}
			default:
				t.Fatalf("Check(%q) = %v, not one of the documented errors", x, err)
			}
			if err == nil && !fm.Checksum && strict.Check(x) != nil && !errors.Is(strict.Check(x), apikey.ErrChecksum) {
				t.Fatalf("Check(%q): accepted without checksum but rejected for another reason with it", x)
			}

			m := fm.Mask(x)
			if fm.Mask(x) != m {
				t.Fatalf("Mask(%q) is not deterministic", x)
			}
			if len(x) < 12 {
				if m != "****" {
					t.Fatalf("Mask(%q) = %q, want ****", x, m)
				}
				continue
			}
			// The part Mask hides: all but the prefix, the next four and
			// the last four characters.
			body := x
			for _, p := range fm.Prefixes {
				if strings.HasPrefix(x, p) {
					body = x[len(p):]
					break
				}
			}
			if len(body) < 12 {
				if m != "****" {
					t.Fatalf("Mask(%q) = %q, want ****", x, m)
				}
				continue
			}
			hidden := body[4 : len(body)-4]
			// Mask must not depend on the hidden part at all: replace every
			// hidden byte and the mask stays the same.
			other := []byte(hidden)
			for i := range other {
				other[i] = '*' ^ other[i] | 0x80 // never equal to the original byte
			}
			y := x[:len(x)-len(body)+4] + string(other) + x[len(x)-4:]
			if my := fm.Mask(y); my != m {
				t.Fatalf("Mask depends on the hidden middle: Mask(%q) = %q, Mask(%q) = %q", x, m, y, my)
			}
			// So it can only equal x, or contain x's middle, by coincidence
			// with the characters it shows, as for "abcd****efgh".
			if m == x && hidden != "****" {
				t.Fatalf("Mask(%q) returned the key unchanged", x)
			}
			// An all-alphanumeric middle of 16+ characters cannot be among
			// the runs of at most 4 alphanumerics that Mask shows.
			if len(hidden) >= 16 && strings.Trim(hidden, alnum) == "" && strings.Contains(m, hidden) {
				t.Fatalf("Mask(%q) = %q contains the hidden middle %q", x, m, hidden)
			}
		}
	})
}
