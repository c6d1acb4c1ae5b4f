package leaks_test

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/keygate/keygate/internal/apikey"
	"github.com/keygate/keygate/internal/leaks"
)

// defaultPattern is the pattern of the default key format, as
// docs/leaks.md gives it.
const defaultPattern = `\b(?:ghub_sk_live_|ghub_sk_test_)[A-Za-z0-9]{32}\b`

func TestPattern(t *testing.T) {
	extra := apikey.Format{Prefixes: []string{"ghub_sk_live_", "ghub_sk_test_", "kg-old_"}, Length: 45, Checksum: true}
	for _, c := range []struct {
		name string
		f    apikey.Format
		want string
	}{
		{"default", apikey.DefaultFormat(), defaultPattern},
		{"an extra prefix", apikey.Format{Prefixes: []string{"ghub_sk_live_", "ghub_sk_test_", "ghub_sk_prev_"}, Length: 45},
			`\b(?:ghub_sk_live_|ghub_sk_test_|ghub_sk_prev_)[A-Za-z0-9]{32}\b`},
		{"a prefix of another length", extra, `\b(?:(?:ghub_sk_live_|ghub_sk_test_)[A-Za-z0-9]{32}|kg-old_[A-Za-z0-9]{38})\b`},
		{"a prefix starting with -", apikey.Format{Prefixes: []string{"-k_", "kk_"}, Length: 40}, `(?:\B-k_|\bkk_)[A-Za-z0-9]{37}\b`},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := leaks.Pattern(c.f)
			if got != c.want {
				t.Fatalf("Pattern = %s, want %s", got, c.want)
			}
			re := regexp.MustCompile(got)
			var keys []string
			for _, p := range c.f.Prefixes {
				k, err := c.f.Mint(p)
				if err != nil {
					t.Fatal(err)
				}
				keys = append(keys, k)
			}
			text := "export OPENAI_API_KEY=" + keys[0] + "\n"
			for _, k := range keys[1:] {
				text += `{"key": "` + k + `"}` + "\n"
			}
			text += "too long: " + keys[0] + "x\n" + "too short: " + keys[0][:len(keys[0])-1] + "\n" +
				"inside a word: x" + keys[0] + "\n"
			if found := re.FindAllString(text, -1); !slices.Equal(found, keys) {
				t.Errorf("finds %q in\n%s\nwant %q", found, text, keys)
			}
		})
	}
	doc, err := os.ReadFile("../../docs/leaks.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(doc), defaultPattern) {
		t.Errorf("docs/leaks.md does not give the default pattern %s", defaultPattern)
	}
}
