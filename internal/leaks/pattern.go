package leaks

import (
	"regexp"
	"strconv"
	"strings"

	"github.com/keygate/keygate/internal/apikey"
)

// Pattern is the regular expression of the keys f accepts, to register
// with GitHub: a prefix, then [A-Za-z0-9] to the key's length, not inside
// a longer word. The checksum is left to this endpoint.
func Pattern(f apikey.Format) string {
	hoist := true // every prefix starts with a word character
	for _, p := range f.Prefixes {
		hoist = hoist && p != "" && isWord(p[0])
	}
	var lengths []int
	byLength := map[int][]string{}
	for _, p := range f.Prefixes {
		n := f.Length - len(p)
		if byLength[n] == nil {
			lengths = append(lengths, n)
		}
		q := regexp.QuoteMeta(p)
		if !hoist {
			q = lead(p) + q
		}
		byLength[n] = append(byLength[n], q)
	}
	alts := make([]string, len(lengths))
	for i, n := range lengths {
		ps := strings.Join(byLength[n], "|")
		if len(byLength[n]) > 1 {
			ps = "(?:" + ps + ")"
		}
		alts[i] = ps + "[A-Za-z0-9]{" + strconv.Itoa(n) + "}"
	}
	re := alts[0] + `\b`
	if len(alts) > 1 {
		re = "(?:" + strings.Join(alts, "|") + `)\b`
	}
	if hoist {
		re = `\b` + re
	}
	return re
}

// lead is what must hold before prefix p: no word character just before
// it.
func lead(p string) string {
	if p != "" && isWord(p[0]) {
		return `\b`
	}
	return `\B`
}

func isWord(c byte) bool {
	return c == '_' || c >= '0' && c <= '9' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z'
}
