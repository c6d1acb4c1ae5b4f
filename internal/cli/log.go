package cli

import (
	"io"
	"log/slog"
)

// newLogger returns a JSON logger at level ("debug", "info", "warn" or
// "error"; validated by config).
func newLogger(w io.Writer, level string) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level))
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l}))
}
