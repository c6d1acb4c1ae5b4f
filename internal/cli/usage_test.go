package cli

import (
	"bytes"
	"context"
	"os"
	"regexp"
	"strings"
	"testing"
)

// readmeCommands returns the synopses in the README's command-line
// section, each on one line, by command name.
func readmeCommands(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, _ := strings.Cut(string(b), "## Command line\n\n```\n")
	block, _, ok := strings.Cut(section, "```")
	if !ok {
		t.Fatal("README has no command-line block")
	}
	out := map[string]string{}
	name := ""
	for _, line := range strings.Split(block, "\n") {
		if rest, ok := strings.CutPrefix(line, "keygate "); ok {
			name = commandName(rest)
			out[name] = oneLine(rest)
		} else if strings.TrimSpace(line) != "" {
			out[name] = oneLine(out[name] + " " + line)
		}
	}
	delete(out, "help")
	return out
}

// commandName is the leading lowercase words of a synopsis.
func commandName(synopsis string) string {
	var words []string
	for _, w := range strings.Fields(synopsis) {
		if !regexp.MustCompile(`^[a-z]+$`).MatchString(w) {
			break
		}
		words = append(words, w)
	}
	return strings.Join(words, " ")
}

// TestHelpMatchesREADME: every command's help gives the README's synopsis
// and lists every flag, each of which the README's synopsis names (but
// --nats-url and --config, which the README names once for every admin
// command), and -h, --help and "keygate help" all work.
func TestHelpMatchesREADME(t *testing.T) {
	readme := readmeCommands(t)
	if len(readme) != len(commands) {
		t.Errorf("README lists %d commands, the CLI %d", len(readme), len(commands))
	}
	flagName := regexp.MustCompile(`(?m)^  (--[a-z-]+)`)
	for name, c := range commands {
		want, ok := readme[name]
		if !ok {
			t.Errorf("keygate %s is not in the README", name)
			continue
		}
		if got := oneLine(c.synopsis); got != want {
			t.Errorf("keygate %s: help says\n  %s\nREADME says\n  %s", name, got, want)
		}
		for _, form := range [][]string{append(strings.Fields(name), "--help"), append(strings.Fields(name), "-h"), append([]string{"help"}, strings.Fields(name)...)} {
			var out bytes.Buffer
			if err := Run(context.Background(), form, IO{Out: &out, Err: &out}); err != nil {
				t.Errorf("keygate %s: %v", strings.Join(form, " "), err)
				continue
			}
			help := out.String()
			if !strings.HasPrefix(oneLine(strings.ReplaceAll(help, "usage: keygate ", "")), want) {
				t.Errorf("keygate %s prints\n%s", strings.Join(form, " "), help)
			}
			for _, m := range flagName.FindAllStringSubmatch(help, -1) {
				if m[1] != "--nats-url" && m[1] != "--config" || name == "serve" {
					if !strings.Contains(want+" ", "["+m[1]+" ") && !strings.Contains(want+" ", m[1]+" ") && !strings.Contains(want, "["+m[1]+"]") {
						t.Errorf("keygate %s has flag %s, which the README's synopsis lacks", name, m[1])
					}
				}
			}
		}
	}
}

// TestUsageErrors: flags a command does not take and extra arguments exit
// 2 with one line that gives the full synopsis.
func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"version", "--json"},
		{"version", "now"},
		{"keys", "create", "--account", "acme", "extra"},
		{"keys", "get"},
		{"balance", "set", "acme", "1", "2"},
		{"serve", "--bogus"},
	} {
		err := Run(context.Background(), args, IO{Out: &bytes.Buffer{}, Err: &bytes.Buffer{}})
		msg := ""
		if err != nil {
			msg = err.Error()
		}
		name := args[0]
		if _, ok := commands[name]; !ok {
			name += " " + args[1]
		}
		if ExitCode(err) != ExitUsage || strings.Contains(msg, "\n") || !strings.HasSuffix(msg, "usage: keygate "+oneLine(commands[name].synopsis)) {
			t.Errorf("%v: exit %d %q", args, ExitCode(err), msg)
		}
	}
}
