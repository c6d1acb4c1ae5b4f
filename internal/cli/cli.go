// Package cli implements the keygate command line: serve, keys, balance
// and version. It parses arguments and prints results; the work is done by
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

const topUsage = `usage: keygate <command> [arguments]

commands:
  serve      run the ext_authz server
  keys       create, list, get, revoke and rotate API keys
  balance    get, set and add to account balances
  check      send one ext_authz Check to a running keygate and print the answer
  version    print the version`

// Run executes the command line args (without the program name).
func Run(ctx context.Context, args []string, io IO) error {
	if len(args) == 0 {
		return usagef("%s", topUsage)
	}
	switch args[0] {
	case "serve":
		return runServe(ctx, args[1:], io)
	case "keys":
		return runKeys(ctx, args[1:], io)
	case "balance":
		return runBalance(ctx, args[1:], io)
	case "check":
		return runCheck(ctx, args[1:], io)
	case "version", "--version", "-version":
		fmt.Fprintln(io.Out, "keygate", Version())
		return nil
	case "help", "-h", "--help":
		fmt.Fprintln(io.Out, topUsage)
		return nil
	}
	return usagef("unknown command %q\n%s", args[0], topUsage)
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
				return nil, usagef("%s %s", fs.Name(), flagError(err))
			}
			args = args[n:]
		}
	}
	if len(pos) != len(want) {
		return nil, usagef("usage: keygate %s %s", fs.Name(), strings.Join(want, " "))
	}
	return pos, nil
}

func flagError(err error) string {
	if errors.Is(err, flag.ErrHelp) {
		return "does not take -h; see the README"
	}
	return err.Error()
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
