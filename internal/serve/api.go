package serve

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/keygate/keygate/internal/admin"
	"github.com/keygate/keygate/internal/adminapi"
	"github.com/keygate/keygate/internal/config"
	"github.com/keygate/keygate/internal/store"
)

// listenAPI starts the admin API if api_addr is set: TLS with api_tls,
// the token of api_token_file stored, and a key index kept current for
// its listings.
func (inst *Instance) listenAPI(ctx context.Context, cfg config.Config, st *store.Store) error {
	if cfg.APIAddr == "" {
		return nil
	}
	if _, err := st.Tokens(ctx); err != nil {
		return fmt.Errorf("api_addr: %w", err)
	}
	idem, err := st.Idempotency(ctx)
	if err != nil {
		return fmt.Errorf("api_addr: %w", err)
	}
	svc := admin.New(admin.Options{Store: st, Keys: cfg.Keys, Record: admin.AuditTo(inst.trail)})
	if cfg.APITokenFile != "" {
		if err := inst.ensureAPIToken(ctx, cfg, svc); err != nil {
			return err
		}
	}
	if err := svc.Follow(inst.bg); err != nil {
		return fmt.Errorf("api_addr: %w", err)
	}
	h := adminapi.New(adminapi.Options{Admin: svc, Idempotency: idem, Log: inst.log})
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 2 * time.Minute, IdleTimeout: 2 * time.Minute,
		ErrorLog: slog.NewLogLogger(inst.log.Handler(), slog.LevelDebug)} // failed handshakes of scanners
	if cfg.APITLS.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(cfg.APITLS.CertFile, cfg.APITLS.KeyFile)
		if err != nil {
			return fmt.Errorf("api_tls.cert_file: %w", err)
		}
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	l, err := net.Listen("tcp", cfg.APIAddr)
	if err != nil {
		return fmt.Errorf("api_addr: %w", err)
	}
	inst.APIAddr, inst.api = l.Addr(), srv
	go func() {
		var err error
		if srv.TLSConfig != nil {
			err = srv.ServeTLS(l, "", "")
		} else {
			err = srv.Serve(l)
		}
		if !errors.Is(err, http.ErrServerClosed) {
			inst.log.Error("admin API server stopped", "err", err)
		}
	}()
	return nil
}
