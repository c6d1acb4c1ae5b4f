// Package serve runs keygate serve: it connects to NATS, watches the key
// store, and serves ext_authz over gRPC and the admin HTTP endpoints until
// its context ends, then drains.
package serve

import (
	"google.golang.org/grpc/experimental"

	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"

	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/cache"
	"github.com/keygate/keygate/events"
	"github.com/keygate/keygate/internal/alerts"
	"github.com/keygate/keygate/internal/audit"
	"github.com/keygate/keygate/internal/barrier"
	"github.com/keygate/keygate/internal/broker"
	"github.com/keygate/keygate/internal/config"
	"github.com/keygate/keygate/internal/fleetclock"
	"github.com/keygate/keygate/internal/funds"
	"github.com/keygate/keygate/internal/httpauth"
	"github.com/keygate/keygate/internal/keyfilter"
	"github.com/keygate/keygate/internal/leaks"
	"github.com/keygate/keygate/internal/observe"
	"github.com/keygate/keygate/internal/presence"
	"github.com/keygate/keygate/internal/ratelimit"
	"github.com/keygate/keygate/internal/settle"
	"github.com/keygate/keygate/internal/store"
	"github.com/keygate/keygate/internal/tick"
	"github.com/keygate/keygate/internal/usage"
)

// StreamWorkers is how many goroutines serve gRPC streams; checks beyond
// them each get a goroutine of their own.
const StreamWorkers = 128

// Instance is a running keygate.
type Instance struct {
	GRPCAddr  net.Addr
	AdminAddr net.Addr
	HTTPAddr  net.Addr // nil unless the HTTP authorization mode is on
	APIAddr   net.Addr // nil unless the admin API is on
	NATSAddr  net.Addr // the embedded NATS server's client address; nil with an external NATS

	cfg      config.Config
	log      *slog.Logger
	conn     *broker.Conn
	watcher  *events.Watcher
	keys     *cache.Table[*authz.Key]
	accounts *cache.Table[*authz.Account]
	limiter  *ratelimit.Limiter
	funds    *funds.Funds
	settler  *settle.Settler
	observe  *observe.Server // settles metered requests from their responses
	leaks    *leaks.Handler  // GitHub's secret scanning endpoint; nil when off
	trail    *audit.Log      // the audit trail; nil without the admin API and leaks
	alerts   *alerts.Alerts  // nil with alerts.enabled false
	clock    *fleetclock.Clock
	peers    *presence.Presence
	usage    *usage.Recorder
	filter   *keyfilter.Keeper
	settle   *barrier.Barrier // before a key is answered as unknown
	authz    *authz.Server
	grpc     *grpc.Server
	health   *health.Server
	admin    *http.Server
	httpAuth *http.Server
	api      *http.Server
	ready    atomic.Bool
	state    *storeState
	wake     chan struct{} // the cache may be behind: catch up
	metrics  *metrics
	bg       context.Context
	stop     context.CancelFunc

	// stopAlerts stops the alerts, handing back those being delivered,
	// waiting at most until its context ends.
	stopAlerts func(context.Context)
}

// Start brings keygate up and returns once it is ready to answer checks.
func Start(ctx context.Context, cfg config.Config, log *slog.Logger) (_ *Instance, err error) {
	begin := time.Now()
	inst := &Instance{cfg: cfg, log: log, state: &storeState{maxStale: cfg.Cache.MaxStaleness.D(), now: time.Now},
		wake: make(chan struct{}, 1)}
	inst.bg, inst.stop = context.WithCancel(context.WithoutCancel(ctx))
	defer func() {
		if err != nil {
			inst.close()
		}
	}()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := newMetrics(reg)
	inst.metrics = m
	if inst.conn, err = broker.Connect(brokerOptions(cfg, log, m, inst.natsState)); err != nil {
		if cfg.NATS.URL != "" {
			err = fmt.Errorf("nats.url %s: %w", config.RedactURLs(cfg.NATS.URL), err)
		}
		return nil, err
	}
	inst.NATSAddr = inst.conn.ServerAddr()
	openCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	so := cfg.NATS.StoreOptions()
	so.HoldTTL = cfg.Pricing.HoldTTL.D()
	st, err := store.Open(openCtx, inst.conn.JS, so)
	if err != nil {
		return nil, err
	}
	if err := inst.openTrail(openCtx, cfg); err != nil {
		return nil, err
	}
	if err := inst.startLeaks(openCtx, cfg, st, reg); err != nil {
		return nil, err
	}
	inst.filter = keyfilter.NewKeeper(keyfilter.Sources{Keys: st.Keys(), Snapshots: st.Filter(),
		Applied: func() uint64 { return inst.watcher.KeysRevision() }, Current: inst.state.Current}, log)
	inst.settle = barrier.New(barrier.Sources{
		Last:    func(ctx context.Context) (uint64, error) { return store.LastRevision(ctx, st.Keys()) },
		Applied: func() uint64 { return inst.watcher.KeysRevision() },
		Online:  func() bool { return inst.conn.NC.IsConnected() && inst.state.Current() },
	}, barrier.DefaultOptions)
	if err := inst.openCaches(cfg, st, reg); err != nil {
		return nil, err
	}
	if err := inst.openAlerts(openCtx, cfg, st, reg); err != nil {
		return nil, err
	}
	// Watch before serving: every fill after this sees later changes.
	if inst.watcher, err = inst.watch(openCtx, st, m); err != nil {
		return nil, err
	}
	go inst.filter.Run(inst.bg, time.Minute) // only now: they need the watcher
	go inst.settle.Run(inst.bg)
	limits, err := inst.startLimiter(openCtx, cfg, st, m)
	if err != nil {
		return nil, err
	}
	inst.usage = usage.New(st, nil, log)
	go inst.usage.Run(inst.bg, cfg.Fleet.UsageFlushInterval.D())
	registerFleet(reg, limits, st, inst.limiter.Stats(), inst.clock, inst.peers)
	inst.startMoney(cfg, st)
	registerMoney(reg, inst.funds.Stats(), inst.settler.Stats())
	inst.runAlerts()
	inst.observe = observe.New(observe.Options{Settler: inst.settler, Log: inst.log})
	inst.observe.Register(reg)
	srv, err := inst.newAuthz(cfg, reg)
	if err != nil {
		return nil, err
	}
	inst.authz = srv
	if err := inst.listen(cfg, srv, reg); err != nil {
		return nil, err
	}
	if err := inst.listenHTTP(cfg, srv); err != nil {
		return nil, err
	}
	if err := inst.listenAPI(openCtx, cfg, st); err != nil {
		return nil, err
	}
	go sweep(inst.bg, srv)
	go inst.syncLoop() // only now: it needs the watcher
	inst.setReady(true)
	log.Info("keygate ready", inst.addrs(cfg, time.Since(begin))...)
	return inst, nil
}

// addrs are the ready line's attributes: every address served.
func (inst *Instance) addrs(cfg config.Config, startup time.Duration) []any {
	a := []any{"grpc_addr", inst.GRPCAddr.String(), "admin_addr", inst.AdminAddr.String()}
	if inst.HTTPAddr != nil {
		a = append(a, "http_addr", inst.HTTPAddr.String(), "http_mode", cfg.HTTPMode)
	}
	if inst.APIAddr != nil {
		a = append(a, "api_addr", inst.APIAddr.String())
	}
	if inst.NATSAddr != nil {
		a = append(a, "embedded_nats_addr", inst.NATSAddr.String())
	} else {
		a = append(a, "nats_url", config.RedactURLs(cfg.NATS.URL))
	}
	return append(a, "startup_ms", startup.Milliseconds())
}

func brokerOptions(cfg config.Config, log *slog.Logger, m *metrics, state func(bool)) broker.Options {
	n := cfg.NATS
	return broker.Options{
		URL: n.URL, Listen: n.Listen, DataDir: n.DataDir, CredsFile: n.CredsFile, NKeyFile: n.NKeyFile,
		User: n.User, Password: n.Password, Token: n.Token, CAFile: n.CAFile, CertFile: n.CertFile, KeyFile: n.KeyFile,
		TokenDir: n.TokenDir, Name: "keygate", Logger: log, OnState: func(up bool) { m.natsState(up); state(up) },
	}
}

// watchTiming times the change streams' heartbeats and when a silent one
// counts as stuck: events' defaults, which tests shorten.
var watchTiming events.Options

// watch starts the change streams, retrying while ctx lasts: a cluster
// that has just started or lost a node may still be electing leaders.
func (inst *Instance) watch(ctx context.Context, st *store.Store, m *metrics) (*events.Watcher, error) {
	for {
		o := watchTiming
		o.Log = inst.log
		w, err := events.StartWith(inst.bg, st, inst.handlers(m), o)
		if err == nil {
			return w, nil
		}
		inst.log.Warn("starting the change streams", "err", err)
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("start change streams: %w", err)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// natsState follows the NATS connection: on loss, the cache starts to age;
// on reconnect, keygate catches up on missed changes before it is ready.
func (inst *Instance) natsState(up bool) {
	if !up {
		inst.storeDown()
		return
	}
	inst.wakeSync()
}

// storeDown marks the cache as possibly behind the store. It runs in NATS
// and watcher callbacks, so it only records and wakes syncLoop.
func (inst *Instance) storeDown() {
	inst.state.down()
	inst.wakeSync()
}

func (inst *Instance) wakeSync() {
	select {
	case inst.wake <- struct{}{}:
	default: // a wake-up is pending already
	}
}

// syncLoop catches up with the store whenever the cache may be behind and
// NATS is connected. It is the only caller of the watcher's Resume.
func (inst *Instance) syncLoop() {
	for {
		select {
		case <-inst.bg.Done():
			return
		case <-inst.wake:
		}
		inst.setHealth()
		if !inst.state.Current() {
			inst.catchUp()
		}
	}
}

// catchUp resumes the change streams until they have caught up, NATS goes
// away again, or keygate stops; failures back off from 250ms to 5s.
func (inst *Instance) catchUp() {
	gen := inst.state.generation()
	begin := time.Now()
	backoff := 250 * time.Millisecond
	for inst.bg.Err() == nil && inst.conn.NC.IsConnected() {
		// Short attempts: a request to a stream that is electing a
		// leader may go unanswered until its deadline.
		ctx, cancel := context.WithTimeout(inst.bg, 5*time.Second)
		err := inst.watcher.Resume(ctx)
		cancel()
		if err == nil {
			if inst.state.currentSince(gen) {
				inst.setHealth()
				inst.metrics.catchUp.Set(time.Since(begin).Seconds())
				inst.log.Info("caught up with the key store", "ms", time.Since(begin).Milliseconds())
			}
			return
		}
		inst.log.Warn("catching up with the key store", "err", err, "retry_in", backoff.String())
		select {
		case <-inst.bg.Done():
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

func (inst *Instance) openCaches(cfg config.Config, st *store.Store, reg prometheus.Registerer) error {
	o := cache.Options{MaxEntries: cfg.Cache.MaxKeys, MaxNegative: cfg.Cache.MaxNegative, NegativeTTL: cfg.Cache.NegativeTTL.D()}
	var err error
	connected := func() bool { return inst.conn.NC.IsConnected() }
	ko := o
	ko.MayExist, ko.Settle = inst.filter.MayExist, inst.settle.Wait
	if inst.keys, err = cache.New(ko, guard(authz.KeyLoader(st), connected)); err != nil {
		return err
	}
	ao := o
	ao.MaxEntries = cfg.Cache.MaxAccounts
	if inst.accounts, err = cache.New(ao, guard(authz.AccountLoader(st), connected)); err != nil {
		return err
	}
	registerCache(reg, "keys", inst.keys.Stats())
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "keygate_unknown_key_settles_total",
		Help: "Store queries made before answering that keys are unknown, so that a key created just before is found (one serves every check waiting).",
	}, func() float64 { return float64(inst.settle.Queries()) }))
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "keygate_key_filter_bytes", Help: "Memory the filter of existing key hashes takes; 0 until it is loaded.",
	}, func() float64 { return float64(inst.filter.Bytes()) }))
	registerCache(reg, "accounts", inst.accounts.Stats())
	registerEntries(reg, "keys", inst.keys.Len)
	registerEntries(reg, "accounts", inst.accounts.Len)
	return nil
}

func (inst *Instance) handlers(m *metrics) events.Handlers {
	return events.Handlers{
		Key: func(hash string, rev uint64, k *store.Key) {
			if k != nil {
				inst.filter.Add(hash)
			}
			if inst.keys.Apply(hash, authz.KeyEntry(rev, k)) {
				m.event(keyEventKind(k))
			}
		},
		Account: func(id string, rev uint64, a *store.Account) {
			if inst.accounts.Apply(id, authz.AccountEntry(rev, a)) {
				m.event("account")
			}
			if inst.alerts != nil {
				inst.alerts.Account(id, rev, a)
			}
		},
		Seen: func(written time.Time) {
			m.seen(written)
			inst.settle.Moved()
		},
		Stalled: inst.storeDown,
	}
}

// keyEventKind labels a key change for metrics.
func keyEventKind(k *store.Key) string {
	switch {
	case k == nil:
		return "key_deleted"
	case k.Revoked():
		return "key_revoked"
	}
	return "key_put"
}

// startLimiter starts the fleet's clock (measured once before keygate is
// ready), the count of keygates sharing the budgets, and the limiter.
func (inst *Instance) startLimiter(ctx context.Context, cfg config.Config, st *store.Store, m *metrics) (*ratelimit.KVStore, error) {
	inst.clock = fleetclock.New(st.Limits(), nil, inst.log)
	if err := inst.clock.Measure(ctx); err != nil {
		inst.log.Warn("measuring the clock offset; rate-limit windows follow this keygate's clock until it is", "err", err)
	}
	go inst.clock.Run(inst.bg, clockEvery)
	peers, err := presence.Start(inst.bg, inst.conn.NC, "keygate.peers."+cfg.NATS.LimitsBucket, cfg.Fleet.SyncInterval.D())
	if err != nil {
		return nil, fmt.Errorf("announcing this keygate: %w", err)
	}
	inst.peers = peers
	limits := ratelimit.NewKVStore(st.Limits())
	inst.limiter = ratelimit.New(ratelimit.Options{Store: limits, Now: inst.clock.Now,
		LeaseTimeout: cfg.Fleet.LeaseTimeout.D(), OutageAfter: cfg.Fleet.OutageAfter.D(),
		Online: inst.conn.NC.IsConnected, Peers: peers.Count, Observe: m.leaseSeconds, Log: inst.log})
	return limits, nil
}

// clockEvery is how often the clock's offset is measured again.
const clockEvery = 30 * time.Second

// startMoney starts the funds that hold balances and the settler that
// keeps this keygate's reservations and settles them.
func (inst *Instance) startMoney(cfg config.Config, st *store.Store) {
	ttl := cfg.Pricing.HoldTTL.D()
	inst.funds = funds.New(st, funds.Options{ID: inst.peers.ID(), LeaseTimeout: cfg.Fleet.LeaseTimeout.D(), OutageAfter: cfg.Fleet.OutageAfter.D(),
		Abandoned: ttl + store.RecordGrace, Online: inst.conn.NC.IsConnected, Peers: inst.peers.Count, Now: inst.clock.Now, Log: inst.log})
	go inst.funds.Run(inst.bg)
	so := settle.Options{ID: inst.peers.ID(), Store: st, Funds: inst.funds, Limiter: inst.limiter,
		Alive: inst.peers.Alive, Log: inst.log}
	if inst.alerts != nil {
		so.Settled = inst.alerts.Settled
	}
	inst.settler = settle.New(so)
	go func() {
		// An error once keygate stops (a start that failed included) is
		// the stop's, not news.
		if err := inst.settler.Run(inst.bg); err != nil && inst.bg.Err() == nil {
			inst.log.Error("settling reservations", "err", err)
		}
	}()
}

func (inst *Instance) newAuthz(cfg config.Config, reg prometheus.Registerer) (*authz.Server, error) {
	rl, err := cfg.RateLimit()
	if err != nil {
		return nil, fmt.Errorf("default_rate_limit: %w", err)
	}
	prices, err := cfg.PriceTable()
	if err != nil {
		return nil, fmt.Errorf("pricing: %w", err)
	}
	o := authz.Options{
		Format: cfg.Keys.Format(), Credentials: cfg.Credentials, Routes: cfg.Routes, DefaultScope: cfg.UnroutedScope(),
		LowBalance: cfg.LowBalanceThreshold, Stale: inst.state.Stale, Metrics: authz.NewMetrics(reg), Log: inst.log, Limiter: inst.limiter,
		Usage: inst.usage, Prices: prices, Funds: inst.funds, Settler: inst.settler, ID: inst.peers.ID(),
		XFFTrustedHops: cfg.ClientIP.XFFTrustedHops,
	}
	if rl != nil {
		o.DefaultLimit = &ratelimit.Limit{Units: rl.Requests, Window: time.Duration(rl.Window)}
	}
	return authz.New(o, inst.keys, inst.accounts), nil
}

func (inst *Instance) listen(cfg config.Config, srv *authz.Server, reg *prometheus.Registry) error {
	opts, err := grpcOptions(cfg.TLS)
	if err != nil {
		return err
	}
	// Stream workers keep their goroutines, and so their grown stacks,
	// between checks instead of starting a goroutine for each.
	// The codec recycles allow responses once marshalled. That is safe only
	// while no stats handler is installed (one reads each reply after it is
	// sent): add none without turning the codec's release off.
	m := inst.metrics
	opts = append(opts, grpc.NumStreamWorkers(StreamWorkers), experimental.BufferPool(&readBuffers{}),
		grpc.ForceServerCodecV2(newCodec(srv.Decoder(), func() { m.grpcError(reasonUndecodable) })),
		grpc.UnknownServiceHandler(func(any, grpc.ServerStream) error {
			m.grpcError(reasonUnknownMethod)
			return status.Error(codes.Unimplemented, "keygate serves envoy.service.auth.v3.Authorization, envoy.service.ext_proc.v3.ExternalProcessor, grpc.health.v1.Health and server reflection")
		}))
	inst.grpc = grpc.NewServer(opts...)
	inst.health = health.NewServer()
	inst.grpc.RegisterService(&checkService, srv)
	extprocv3.RegisterExternalProcessorServer(inst.grpc, inst.observe)
	healthpb.RegisterHealthServer(inst.grpc, inst.health)
	if cfg.GRPCReflection {
		reflection.Register(inst.grpc)
	}
	gl, err := net.Listen("tcp", cfg.GRPCAddr)
	if err != nil {
		return fmt.Errorf("grpc_addr: %w", err)
	}
	al, err := net.Listen("tcp", cfg.AdminAddr)
	if err != nil {
		gl.Close()
		return fmt.Errorf("admin_addr: %w", err)
	}
	inst.GRPCAddr, inst.AdminAddr = gl.Addr(), al.Addr()
	inst.admin = &http.Server{Handler: inst.adminHandler(reg), ReadHeaderTimeout: 5 * time.Second}
	go inst.serveGRPC(gl)
	go inst.serveAdmin(al)
	return nil
}

// listenHTTP starts the HTTP authorization mode if http_addr is set.
func (inst *Instance) listenHTTP(cfg config.Config, srv *authz.Server) error {
	if cfg.HTTPAddr == "" {
		return nil
	}
	l, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("http_addr: %w", err)
	}
	inst.HTTPAddr = l.Addr()
	h := httpauth.New(srv, httpauth.Options{Mode: cfg.HTTPMode, Release: authz.Release, Log: inst.log})
	inst.httpAuth = &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := inst.httpAuth.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			inst.log.Error("http authorization server stopped", "err", err)
		}
	}()
	return nil
}

func (inst *Instance) serveGRPC(l net.Listener) {
	if err := inst.grpc.Serve(l); err != nil {
		inst.log.Error("grpc server stopped", "err", err)
	}
}

func (inst *Instance) serveAdmin(l net.Listener) {
	if err := inst.admin.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
		inst.log.Error("admin server stopped", "err", err)
	}
}

func (inst *Instance) setReady(ready bool) {
	inst.ready.Store(ready)
	inst.setHealth()
}

// setHealth makes gRPC health say what /readyz says.
func (inst *Instance) setHealth() {
	st := healthpb.HealthCheckResponse_NOT_SERVING
	if inst.Ready() {
		st = healthpb.HealthCheckResponse_SERVING
	}
	inst.health.SetServingStatus("", st)
	inst.health.SetServingStatus(authv3.Authorization_ServiceDesc.ServiceName, st)
	inst.health.SetServingStatus(extprocv3.ExternalProcessor_ServiceDesc.ServiceName, st)
}

// Authorization is the decision the gRPC server serves, for callers in
// the same process (benchmarks).
func (inst *Instance) Authorization() authv3.AuthorizationServer { return inst.authz }

// NATSStats are the NATS connection's message and byte counts.
func (inst *Instance) NATSStats() nats.Statistics { return inst.conn.NC.Stats() }

// KeyLookups is how many times keygate has read a key record from the
// store for a check.
func (inst *Instance) KeyLookups() uint64 { return inst.keys.Stats().Loads.Load() }

// SettleQueries is how many store queries keygate has made before
// answering that keys are unknown.
func (inst *Instance) SettleQueries() uint64 { return inst.settle.Queries() }

// KeyFilter is the filter of existing key hashes.
func (inst *Instance) KeyFilter() *keyfilter.Keeper { return inst.filter }

// Peers is how many keygates share this one's rate limits, itself
// included, as it last heard.
func (inst *Instance) Peers() int64 { return inst.peers.Count() }

// Live returns why keygate cannot get back to a current store by itself,
// so that it should be restarted: its NATS connection closed for good, or
// a change stream silent while NATS answers (see events.Watcher.Stuck).
// NATS being away is not such a reason: keygate reconnects, and serves
// cached answers meanwhile.
func (inst *Instance) Live() error {
	if inst.conn.ClosedForGood() {
		return errors.New("the NATS connection is closed for good")
	}
	return inst.watcher.Stuck()
}

// Ready reports whether keygate answers checks from a current store.
func (inst *Instance) Ready() bool {
	return inst.ready.Load() && inst.conn.NC.IsConnected() && inst.state.Current()
}

// Shutdown reports not ready, keeps answering checks for the configured
// delay (the proxy beside keygate is still sending them while it drains),
// then stops accepting checks, drains those in flight (up to the
// configured grace), and closes everything.
func (inst *Instance) Shutdown() error {
	inst.setReady(false)
	delay := inst.cfg.ShutdownDelay.D()
	inst.log.Info("shutting down: not ready, still answering checks", "delay", delay.String(), "grace", inst.cfg.ShutdownGrace.D().String())
	time.Sleep(delay)
	inst.log.Info("draining")
	done := make(chan struct{})
	go func() {
		inst.grpc.GracefulStop()
		close(done)
	}()
	graceful := true
	select {
	case <-done:
	case <-time.After(inst.cfg.ShutdownGrace.D()):
		inst.grpc.Stop()
		graceful = false
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if inst.httpAuth != nil {
		hctx, hcancel := context.WithTimeout(context.Background(), inst.cfg.ShutdownGrace.D())
		_ = inst.httpAuth.Shutdown(hctx) // drains requests in flight
		hcancel()
	}
	if inst.api != nil {
		actx, acancel := context.WithTimeout(context.Background(), inst.cfg.ShutdownGrace.D())
		_ = inst.api.Shutdown(actx) // finishes the changes in flight
		acancel()
	}
	_ = inst.admin.Shutdown(ctx)
	fctx, fcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer fcancel()
	// Only once every stream has ended (a forced stop leaves handlers
	// running): the settlements they started finish before NATS closes.
	if graceful {
		if err := inst.observe.Drain(fctx); err != nil {
			inst.log.Warn("settlements from responses still in progress at shutdown; holds not settled settle at their TTL", "err", err)
		}
	}
	inst.limiter.Close(fctx) // unused rate-limit leases go back to the fleet
	if inst.stopAlerts != nil {
		inst.stopAlerts(fctx) // alerts being delivered go to another keygate
	}
	if !inst.conn.NC.IsConnected() {
		inst.log.Warn("key usage since the last flush is not recorded: NATS is unreachable")
	} else if err := inst.usage.Flush(fctx); err != nil {
		inst.log.Warn("recording key usage at shutdown", "err", err)
	}
	inst.close()
	return nil
}

func (inst *Instance) close() {
	if inst.stop != nil {
		inst.stop()
	}
	if inst.conn != nil {
		inst.conn.Close() // first: it ends the watches at once, even during an outage
	}
	if inst.watcher != nil {
		inst.watcher.Stop()
	}
	if inst.keys != nil {
		inst.keys.Close()
	}
	if inst.accounts != nil {
		inst.accounts.Close()
	}
}

// sweep forgets idle rate-limit state every few seconds.
func sweep(ctx context.Context, srv *authz.Server) {
	tick.Every(ctx, 5*time.Second, srv.Limiter().Sweep)
}
