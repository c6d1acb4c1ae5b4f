package observe

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/keygate/keygate/internal/settle"
)

// Settler settles a reservation once (settle.Settler).
type Settler interface {
	Settle(ctx context.Context, id string, o settle.Outcome) (*settle.Settlement, error)
}

var _ Settler = (*settle.Settler)(nil)

// Defaults of Options.
const (
	DefaultMaxBody     = 4 << 20
	DefaultMaxBuffered = 64 << 20
	DefaultTimeout     = 10 * time.Second
	DefaultParallel    = 64
)

// Options configure a Server.
type Options struct {
	Settler Settler
	// MaxBody bounds the bytes of a JSON body kept to read its usage; a
	// larger body settles at the estimate. Default DefaultMaxBody.
	MaxBody int
	// MaxBuffered bounds the bytes of JSON bodies kept across all streams
	// at once; a body that finds no room settles at the estimate, as one
	// over MaxBody does. Default DefaultMaxBuffered.
	MaxBuffered int64
	// Timeout bounds a settlement, waiting for its turn included.
	// Default DefaultTimeout.
	Timeout time.Duration
	// Parallel bounds the settlements in progress. Default
	// DefaultParallel.
	Parallel int
	Log      *slog.Logger
}

// Server is keygate's ExternalProcessor.
type Server struct {
	o         Options
	turns     chan struct{} // a settlement in progress holds one
	settling  sync.WaitGroup
	exchanges sync.Pool
	buffered  budget
	stats     Stats
}

var _ extprocv3.ExternalProcessorServer = (*Server)(nil)

// Stats count what a Server did: totals, no key's or account's own.
type Stats struct {
	Streams  atomic.Uint64 // streams Envoy opened
	Usage    atomic.Uint64 // settled from the response's usage
	Estimate atomic.Uint64 // settled at the estimate
	Failed   atomic.Uint64 // settled as failed, without charge
	// Errors: settlements that failed or timed out, streams that broke
	// and reservation headers that could not be read.
	Errors atomic.Uint64
}

// New returns a Server that settles through o.Settler.
func New(o Options) *Server {
	if o.MaxBody <= 0 {
		o.MaxBody = DefaultMaxBody
	}
	if o.MaxBuffered <= 0 {
		o.MaxBuffered = DefaultMaxBuffered
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Parallel <= 0 {
		o.Parallel = DefaultParallel
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	s := &Server{o: o, turns: make(chan struct{}, o.Parallel), buffered: budget{limit: o.MaxBuffered}}
	s.exchanges.New = func() any { return &exchange{max: o.MaxBody, room: &s.buffered} }
	return s
}

// Buffered is the bytes of JSON bodies the streams keep now.
func (s *Server) Buffered() int64 { return s.buffered.used.Load() }

// Stats returns the counters.
func (s *Server) Stats() *Stats { return &s.stats }

// stream is the part of a Process stream the Server uses.
type stream interface {
	RecvMsg(m any) error
	Send(*extprocv3.ProcessingResponse) error
}

// Process observes one request and its response (see the package doc).
func (s *Server) Process(ps extprocv3.ExternalProcessor_ProcessServer) error {
	return s.process(ps)
}

func (s *Server) process(ps stream) error {
	s.stats.Streams.Add(1)
	x := s.exchanges.Get().(*exchange)
	defer func() {
		x.reset()
		s.exchanges.Put(x)
	}()
	var req extprocv3.ProcessingRequest
	for {
		if err := ps.RecvMsg(&req); err != nil {
			if !streamEnded(err) {
				s.stats.Errors.Add(1)
				s.o.Log.Debug("observing a response", "err", err)
			}
			s.finish(x)
			return nil
		}
		done := x.handle(&req)
		if x.bad { // Debug: a client can send these where no proxy removes them
			s.stats.Errors.Add(1)
			s.o.Log.Debug("a request's reservation header is not one keygate writes; it is not settled from its response")
		}
		if done {
			s.finish(x)
			return nil // closing tells Envoy that no more messages are needed
		}
		if !req.GetObservabilityMode() {
			if r := reply(&req); r != nil {
				if err := ps.Send(r); err != nil {
					s.finish(x)
					return err
				}
			}
		}
	}
}

// streamEnded reports whether err is the end of a stream, as Envoy ends
// one: a half close, or a reset (Envoy resets the stream when it closes
// it, after its deferred_close_timeout).
func streamEnded(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, context.Canceled) || status.Code(err) == codes.Canceled
}

// finish settles x's reservation, if it has one, in the background.
func (s *Server) finish(x *exchange) {
	if x.id == "" {
		return
	}
	id, o := x.id, Outcome(x.response())
	s.settling.Add(1)
	go s.settle(id, o)
}

// settle settles reservation id with o, waiting for its turn, within
// the timeout.
func (s *Server) settle(id string, o settle.Outcome) {
	defer s.settling.Done()
	ctx, cancel := context.WithTimeout(context.Background(), s.o.Timeout)
	defer cancel()
	select {
	case s.turns <- struct{}{}:
	case <-ctx.Done():
		s.failed(id, ctx.Err())
		return
	}
	defer func() { <-s.turns }()
	if _, err := s.o.Settler.Settle(ctx, id, o); err != nil {
		s.failed(id, err)
		return
	}
	switch {
	case o.Failed:
		s.stats.Failed.Add(1)
	case o.HasUsage:
		s.stats.Usage.Add(1)
	default:
		s.stats.Estimate.Add(1)
	}
}

func (s *Server) failed(id string, err error) {
	s.stats.Errors.Add(1)
	level := slog.LevelWarn
	if errors.Is(err, settle.ErrUnknown) { // Debug: a client can name one where no proxy removes the header
		level = slog.LevelDebug
	}
	s.o.Log.Log(context.Background(), level, "settling a reservation from its response", "reservation", id, "err", err)
}

// Drain waits for the settlements in progress, until ctx ends. Call it
// once no stream is served any more.
func (s *Server) Drain(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		s.settling.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Empty answers that let a request continue unchanged, one per kind of
// message; only sent to a filter not in observability mode.
var (
	continueRequestHeaders   = &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestHeaders{RequestHeaders: &extprocv3.HeadersResponse{}}}
	continueResponseHeaders  = &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseHeaders{ResponseHeaders: &extprocv3.HeadersResponse{}}}
	continueRequestBody      = &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestBody{RequestBody: &extprocv3.BodyResponse{}}}
	continueResponseBody     = &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseBody{ResponseBody: &extprocv3.BodyResponse{}}}
	continueRequestTrailers  = &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestTrailers{RequestTrailers: &extprocv3.TrailersResponse{}}}
	continueResponseTrailers = &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseTrailers{ResponseTrailers: &extprocv3.TrailersResponse{}}}
)

// reply is the answer to req that changes nothing; nil for a message of
// no kind.
func reply(req *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
	switch req.Request.(type) {
	case *extprocv3.ProcessingRequest_RequestHeaders:
		return continueRequestHeaders
	case *extprocv3.ProcessingRequest_ResponseHeaders:
		return continueResponseHeaders
	case *extprocv3.ProcessingRequest_RequestBody:
		return continueRequestBody
	case *extprocv3.ProcessingRequest_ResponseBody:
		return continueResponseBody
	case *extprocv3.ProcessingRequest_RequestTrailers:
		return continueRequestTrailers
	case *extprocv3.ProcessingRequest_ResponseTrailers:
		return continueResponseTrailers
	}
	return nil
}
