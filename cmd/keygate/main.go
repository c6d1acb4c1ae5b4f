// Command keygate is the API-key gatekeeper: an Envoy ext_authz server and
// the admin commands for its keys and balances.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/keygate/keygate/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop() // a second signal ends the process at once
	}()
	err := cli.Run(ctx, os.Args[1:], cli.IO{Out: os.Stdout, Err: os.Stderr, Getenv: os.Getenv})
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "keygate:", err)
	}
	os.Exit(cli.ExitCode(err))
}
