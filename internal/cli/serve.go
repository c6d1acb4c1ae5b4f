package cli

import (
	"context"
	"flag"
	"fmt"
	"time"

	"github.com/keygate/keygate/internal/config"
	"github.com/keygate/keygate/internal/logs"
	"github.com/keygate/keygate/internal/memtune"
	"github.com/keygate/keygate/internal/serve"
)

// runServe runs "keygate serve": config file, then KEYGATE_* environment,
// then flags, validated before anything starts.
func runServe(ctx context.Context, args []string, io IO) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	file := fs.String("config", "", "YAML config `FILE`")
	check := fs.Bool("check-config", false, "validate the configuration and exit")
	// Defaults are shown in the help; only flags given override the
	// configuration.
	d := config.Default()
	flags := map[string]*string{
		"grpc-addr":   fs.String("grpc-addr", d.GRPCAddr, "ext_authz gRPC listen `address`"),
		"admin-addr":  fs.String("admin-addr", d.AdminAddr, "admin HTTP listen `address` (/metrics, /healthz, /readyz)"),
		"http-addr":   fs.String("http-addr", "", "HTTP authorization listen `address` (default off)"),
		"api-addr":    fs.String("api-addr", "", "admin API listen `address` (default off; off loopback it needs api_tls)"),
		"nats-url":    fs.String("nats-url", "", "NATS `URL` or comma-separated seed list (default: run NATS in-process)"),
		"data-dir":    fs.String("data-dir", d.NATS.DataDir, "embedded NATS data `directory`"),
		"nats-listen": fs.String("nats-listen", d.NATS.Listen, "embedded NATS client `address`"),
	}
	if _, err := parse(fs, args); err != nil {
		return err
	}
	cfg, err := config.Load(*file, io.Getenv)
	if err != nil {
		return usagef("%v", err)
	}
	set := map[string]*string{
		"grpc-addr": &cfg.GRPCAddr, "admin-addr": &cfg.AdminAddr, "http-addr": &cfg.HTTPAddr, "api-addr": &cfg.APIAddr,
		"nats-url": &cfg.NATS.URL, "data-dir": &cfg.NATS.DataDir, "nats-listen": &cfg.NATS.Listen,
	}
	fs.Visit(func(f *flag.Flag) {
		if p, ok := set[f.Name]; ok {
			*p = *flags[f.Name]
		}
	})
	if err := cfg.Validate(); err != nil {
		return usagef("invalid configuration:\n%v", err)
	}
	if *check {
		fmt.Fprintln(io.Out, "configuration is valid")
		return nil
	}
	log := logs.New(io.Err, cfg.LogLevel)
	logs.Capture(log)
	memtune.Defaults(cfg.NATS.URL == "")
	inst, err := serve.Start(ctx, cfg, log)
	if err != nil {
		return err
	}
	memtune.Settle()
	go memtune.Run(ctx, 5*time.Second)
	<-ctx.Done()
	return inst.Shutdown()
}
