// Package logs makes every log line of a keygate process JSON through
// log/slog: the standard library's log package, gRPC's logger and the
// embedded NATS server's, each at the matching level.
package logs

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	"google.golang.org/grpc/grpclog"
)

// New returns a JSON logger writing to w at level ("debug", "info",
// "warn" or "error"; info if it is none of them).
func New(w io.Writer, level string) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level))
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l}))
}

// Capture routes the standard library's log package and gRPC's logger to
// log. Call it once, before any gRPC use.
func Capture(log *slog.Logger) {
	slog.SetDefault(log)
	grpclog.SetLoggerV2(grpcLogger{log.With("component", "grpc")})
}

// grpcLogger is grpclog.LoggerV2 on slog. gRPC's info lines are debug
// here: they report routine connection events.
type grpcLogger struct{ log *slog.Logger }

var _ grpclog.LoggerV2 = grpcLogger{}

func (g grpcLogger) at(l slog.Level, msg string) { g.log.Log(context.Background(), l, msg) }

func (g grpcLogger) Info(args ...any)   { g.at(slog.LevelDebug, fmt.Sprint(args...)) }
func (g grpcLogger) Infoln(args ...any) { g.at(slog.LevelDebug, fmt.Sprint(args...)) }
func (g grpcLogger) Infof(format string, args ...any) {
	g.at(slog.LevelDebug, fmt.Sprintf(format, args...))
}
func (g grpcLogger) Warning(args ...any)   { g.at(slog.LevelWarn, fmt.Sprint(args...)) }
func (g grpcLogger) Warningln(args ...any) { g.at(slog.LevelWarn, fmt.Sprint(args...)) }
func (g grpcLogger) Warningf(format string, args ...any) {
	g.at(slog.LevelWarn, fmt.Sprintf(format, args...))
}
func (g grpcLogger) Error(args ...any)   { g.at(slog.LevelError, fmt.Sprint(args...)) }
func (g grpcLogger) Errorln(args ...any) { g.at(slog.LevelError, fmt.Sprint(args...)) }
func (g grpcLogger) Errorf(format string, args ...any) {
	g.at(slog.LevelError, fmt.Sprintf(format, args...))
}

// Fatal logs at error level; gRPC exits the process after it.
func (g grpcLogger) Fatal(args ...any)   { g.at(slog.LevelError, fmt.Sprint(args...)) }
func (g grpcLogger) Fatalln(args ...any) { g.at(slog.LevelError, fmt.Sprint(args...)) }
func (g grpcLogger) Fatalf(format string, args ...any) {
	g.at(slog.LevelError, fmt.Sprintf(format, args...))
}

// V reports whether verbose logging at level l is on: only at debug.
func (g grpcLogger) V(l int) bool { return g.log.Enabled(context.Background(), slog.LevelDebug) }

// NATSServer is the embedded nats-server's logger (server.Logger) on
// slog. Its notices (a start-up banner of some thirty lines, routine
// events) are debug, as keygate's own info lines say what matters; its
// warnings are warnings, its errors and fatal errors errors.
type NATSServer struct{ Log *slog.Logger }

func (n NATSServer) at(l slog.Level, format string, args []any) {
	n.Log.Log(context.Background(), l, fmt.Sprintf(format, args...))
}

// Noticef implements server.Logger.
func (n NATSServer) Noticef(format string, v ...any) { n.at(slog.LevelDebug, format, v) }

// Warnf implements server.Logger.
func (n NATSServer) Warnf(format string, v ...any) { n.at(slog.LevelWarn, format, v) }

// Fatalf implements server.Logger.
func (n NATSServer) Fatalf(format string, v ...any) { n.at(slog.LevelError, format, v) }

// Errorf implements server.Logger.
func (n NATSServer) Errorf(format string, v ...any) { n.at(slog.LevelError, format, v) }

// Debugf implements server.Logger.
func (n NATSServer) Debugf(format string, v ...any) { n.at(slog.LevelDebug, format, v) }

// Tracef implements server.Logger.
func (n NATSServer) Tracef(format string, v ...any) { n.at(slog.LevelDebug, format, v) }
