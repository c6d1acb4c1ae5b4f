// Package docs_test checks the repository's Markdown: every relative link
// names a file or folder of the repository, so that the documentation
// reads the same in any checkout.
package docs_test

import (
	"bytes"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// A link's destination: inline ("](dest)", "](<dest> "title")"), a
// reference definition ("[id]: dest") or an HTML href or src.
var (
	inlineLink = regexp.MustCompile(`\]\(\s*(<[^>]*>|[^)\s]*)`)
	refLink    = regexp.MustCompile(`^ {0,3}\[[^\]]+\]:\s*(<[^>]*>|\S+)`)
	htmlLink   = regexp.MustCompile(`(?i)\b(?:href|src)\s*=\s*"([^"]*)"`)
	codeSpan   = regexp.MustCompile("`+[^`]*`+")
	fence      = regexp.MustCompile("^ {0,3}(```|~~~)")
	scheme     = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9+.-]*:`)
)

// link is a destination found on a line of a Markdown file.
type link struct {
	line int
	dest string
}

// links returns the destinations in md, outside code blocks and code spans.
func links(md string) []link {
	var out []link
	var inFence string
	for i, line := range strings.Split(md, "\n") {
		if m := fence.FindStringSubmatch(line); m != nil {
			switch {
			case inFence == "":
				inFence = m[1]
			case m[1] == inFence:
				inFence = ""
			}
			continue
		}
		if inFence != "" {
			continue
		}
		line = codeSpan.ReplaceAllString(line, "")
		for _, re := range []*regexp.Regexp{inlineLink, refLink, htmlLink} {
			for _, m := range re.FindAllStringSubmatch(line, -1) {
				out = append(out, link{line: i + 1, dest: strings.Trim(m[1], "<>")})
			}
		}
	}
	return out
}

// problem says what is wrong with dest, a link in the Markdown file file
// (a slash-separated path from the repository's root), or "" if nothing
// is: a relative link must name a file of the repository (in tracked)
// or a folder holding one.
// Links with a scheme, protocol-relative links and anchors in the same
// page are not relative and are left alone.
func problem(file, dest string, tracked map[string]bool) string {
	if dest == "" || strings.HasPrefix(dest, "#") || strings.HasPrefix(dest, "//") || scheme.MatchString(dest) {
		return ""
	}
	p, _, _ := strings.Cut(dest, "#")
	p, _, _ = strings.Cut(p, "?")
	p, err := url.PathUnescape(p)
	if err != nil {
		return fmt.Sprintf("%q is not a valid path", dest)
	}
	if strings.HasPrefix(p, "/") { // the repository's root
		p = path.Clean(p[1:])
	} else {
		p = path.Join(path.Dir(file), p)
	}
	switch {
	case p == ".." || strings.HasPrefix(p, "../"):
		return fmt.Sprintf("%q points outside the repository", dest)
	case p == ".":
		return ""
	}
	if !tracked[p] {
		return fmt.Sprintf("%q names %s, which is not in the repository", dest, p)
	}
	return ""
}

// gitFiles runs git ls-files with args in root and returns the paths it
// lists, slash-separated from the root.
func gitFiles(t *testing.T, root string, args ...string) []string {
	t.Helper()
	cmd := exec.Command("git", append([]string{"ls-files", "-z"}, args...)...)
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("git ls-files: %v (this test needs git: apt-get install git)", err)
	}
	var files []string
	for _, f := range bytes.Split(bytes.TrimRight(out, "\x00"), []byte{0}) {
		files = append(files, string(f))
	}
	return files
}

// TestMarkdownLinksStayInRepository: every relative link in a tracked
// Markdown file names a file or folder of the repository (the product
// contract lives in docs/, not beside the repository). A file not yet
// committed counts, one that git ignores (a build output) does not.
func TestMarkdownLinksStayInRepository(t *testing.T) {
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	targets := map[string]bool{}
	for _, f := range gitFiles(t, root, "--cached", "--others", "--exclude-standard") {
		for p := f; p != "." && p != ""; p = path.Dir(p) {
			targets[p] = true // the file and the folders holding it
		}
	}
	n := 0
	for _, f := range gitFiles(t, root, "--", "*.md") {
		b, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(f)))
		if os.IsNotExist(err) {
			continue // deleted in the work tree, not yet committed
		}
		if err != nil {
			t.Fatal(err)
		}
		n++
		for _, l := range links(string(b)) {
			if msg := problem(f, l.dest, targets); msg != "" {
				t.Errorf("%s:%d: %s", f, l.line, msg)
			}
		}
	}
	if n == 0 {
		t.Fatal("found no tracked Markdown files")
	}
}

func TestProblem(t *testing.T) {
	tracked := map[string]bool{"README.md": true, "docs": true, "docs/spec.md": true, "docs/fleet.md": true,
		"proxy": true, "proxy/nginx": true, "proxy/nginx/README.md": true, "a b.md": true}
	tests := []struct {
		file, dest string
		want       string // "" or a part of the problem
	}{
		{"README.md", "docs/spec.md", ""},
		{"README.md", "docs/spec.md#2-the-decision", ""},
		{"README.md", "./docs/", ""},
		{"README.md", "proxy/nginx", ""},
		{"README.md", "/docs/fleet.md", ""},
		{"README.md", "a%20b.md", ""},
		{"docs/spec.md", "fleet.md", ""},
		{"docs/spec.md", "../README.md", ""},
		{"proxy/nginx/README.md", "../../docs/spec.md?plain=1", ""},
		{"README.md", "#consistency-model", ""},
		{"README.md", "https://github.com/x/y/blob/main/z.md", ""},
		{"README.md", "mailto:ops@example.com", ""},
		{"README.md", "//example.com/x", ""},
		{"README.md", "../shared/SPEC.md", "outside the repository"},
		{"README.md", "../shared/SPEC.md#top", "outside the repository"},
		{"docs/spec.md", "../../x.md", "outside the repository"},
		{"proxy/nginx/README.md", "../../../keygate/README.md", "outside the repository"},
		{"README.md", "..", "outside the repository"},
		{"README.md", "docs/nope.md", "not in the repository"},
		{"README.md", "docs/spec.md/", ""},
		{"docs/fleet.md", "docs/spec.md", "not in the repository"},
		{"README.md", "bin/keygate", "not in the repository"},
		{"README.md", "a%zzb.md", "not a valid path"},
	}
	for _, tc := range tests {
		got := problem(tc.file, tc.dest, tracked)
		if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
			t.Errorf("problem(%s, %q) = %q, want %q", tc.file, tc.dest, got, tc.want)
		}
	}
}

func TestLinks(t *testing.T) {
	md := strings.Join([]string{
		"# Title", // 1
		"See [the spec](docs/spec.md) and ![a](img.png \"t\").", // 2
		"Code `[x](../in-code.md)` is not a link.",              // 3
		"```",                 // 4
		"[y](../in-fence.md)", // 5
		"```",                 // 6
		"[ref]: ../ref.md",    // 7
		`<a href="../html.md">x</a> [z](<a b.md>)`, // 8
		"~~~md",                        // 9
		"[w](../tilde.md)",             // 10
		"~~~",                          // 11
		"[`code text`](x/y.md#anchor)", // 12
	}, "\n")
	want := []link{{2, "docs/spec.md"}, {2, "img.png"}, {7, "../ref.md"}, {8, "a b.md"}, {8, "../html.md"}, {12, "x/y.md#anchor"}}
	got := links(md)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("links =\n%v\nwant\n%v", got, want)
	}
}
