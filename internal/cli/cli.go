// Package cli implements the keygate command line: serve, keys, balance,
// usage, tokens, check and version. It parses arguments and prints results; the work is done by
// the packages it calls.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// ExitError carries the process exit code for an error.
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string { return e.Err.Error() }
func (e *ExitError) Unwrap() error { return e.Err }

// Exit codes.
const (
	ExitFailure = 1 // the command ran and failed, e.g. a missing key
	ExitUsage   = 2 // bad arguments
)

// usagef reports bad arguments: exit 2 with a one-line reason.
func usagef(format string, args ...any) error {
	return &ExitError{Code: ExitUsage, Err: fmt.Errorf(format, args...)}
}

// ExitCode maps an error returned by Run to a process exit code.
func ExitCode(err error) int {
	if err == nil {
		return 0
	}
	var e *ExitError
	if errors.As(err, &e) {
		return e.Code
	}
	return ExitFailure
}

// Env reads the environment; tests pass their own.
type Env func(string) string

// IO is where a command reads its environment and writes its output.
type IO struct {
	Out    io.Writer
	Err    io.Writer
	Getenv Env
}

// Run executes the command line args (without the program name). A
// command asked for its help (-h, --help, or "keygate help COMMAND")
// prints it and succeeds.
func Run(ctx context.Context, args []string, io IO) error {
	err := run(ctx, args, io)
	if h, ok := err.(*helpError); ok {
		writeHelp(io.Out, h.fs)
		return nil
	}
	return err
}

func run(ctx context.Context, args []string, io IO) error {
	if len(args) == 0 {
		return usagef("%s", groupUsage(""))
	}
	switch args[0] {
	case "serve":
		return runServe(ctx, args[1:], io)
	case "keys":
		return runKeys(ctx, args[1:], io)
	case "balance":
		return runBalance(ctx, args[1:], io)
	case "usage":
		return runUsage(ctx, args[1:], io)
	case "tokens":
		return runTokens(ctx, args[1:], io)
	case "check":
		return runCheck(ctx, args[1:], io)
	case "settle":
		return runSettle(ctx, args[1:], io)
	case "audit":
		return runAudit(ctx, args[1:], io)
	case "version", "--version", "-version":
		return runVersion(args[1:], io)
	case "help", "-h", "--help":
		if len(args) > 1 && args[0] == "help" {
			return run(ctx, append(args[1:], "--help"), io)
		}
		fmt.Fprintln(io.Out, groupUsage(""))
		return nil
	}
	return usagef("unknown command %q; 'keygate help' lists them", args[0])
}

func runVersion(args []string, io IO) error {
	fs := flag.NewFlagSet("version", flag.ContinueOnError)
	if _, err := parse(fs, args); err != nil {
		return err
	}
	fmt.Fprintln(io.Out, "keygate", Version())
	return nil
}

// parse parses flags and positional arguments in any order, as in
// "balance set acme 100 --currency MXN". A negative number ("-3.25") is a
// positional argument, not a flag. It requires exactly want positionals.
func parse(fs *flag.FlagSet, args []string, want ...string) ([]string, error) {
	fs.SetOutput(io.Discard)
	var pos []string
	for len(args) > 0 {
		a := args[0]
		switch {
		case a == "--":
			pos = append(pos, args[1:]...)
			args = nil
		case !strings.HasPrefix(a, "-") || a == "-" || isNumber(a):
			pos = append(pos, a)
			args = args[1:]
		default:
			n := 1
			if needsValue(fs, a) && len(args) > 1 {
				n = 2
			}
			if err := fs.Parse(args[:n]); err != nil {
				if errors.Is(err, flag.ErrHelp) {
					return nil, &helpError{fs}
				}
				return nil, usagef("%s: %v; usage: keygate %s", fs.Name(), err, oneLine(commands[fs.Name()].synopsis))
			}
			args = args[n:]
		}
	}
	if len(pos) != len(want) {
		what := "no arguments"
		if len(want) > 0 {
			what = strings.Join(want, " ")
		}
		return nil, usagef("%s takes %s, got %d; usage: keygate %s", fs.Name(), what, len(pos), oneLine(commands[fs.Name()].synopsis))
	}
	return pos, nil
}

func needsValue(fs *flag.FlagSet, arg string) bool {
	name := strings.TrimLeft(arg, "-")
	if strings.Contains(name, "=") {
		return false
	}
	f := fs.Lookup(name)
	if f == nil {
		return false
	}
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return !ok || !b.IsBoolFlag()
}

func isNumber(s string) bool {
	s = strings.TrimPrefix(s, "-")
	if s == "" {
		return false
	}
	for _, c := range s {
		if (c < '0' || c > '9') && c != '.' {
			return false
		}
	}
	return true
}
