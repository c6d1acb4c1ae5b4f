package cli

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"time"

	"github.com/keygate/keygate/internal/settle"
)

// runSettle settles a metered request over NATS, as a backend behind
// nginx or Traefik does through the settle API: "keygate settle
// RESERVATION_ID --input N --output N [--cached N] [--status 200]".
func runSettle(ctx context.Context, args []string, io IO) error {
	fs := flag.NewFlagSet("settle", flag.ContinueOnError)
	f := addAdminFlags(fs)
	in := fs.Int64("input", -1, "input (prompt) `tokens` the response reported; with --output")
	out := fs.Int64("output", -1, "output (completion) `tokens` the response reported")
	cached := fs.Int64("cached", 0, "of the input, cached `tokens`")
	status := fs.Int("status", 200, "the backend's HTTP `status` (400 or more charges nothing)")
	pos, err := parse(fs, args, "RESERVATION_ID")
	if err != nil {
		return err
	}
	if (*in < 0) != (*out < 0) || *cached < 0 || *cached > max(*in, 0) {
		return usagef("--input and --output go together (no usage: the estimate is charged), and --cached is part of --input")
	}
	req := map[string]any{"reservation_id": pos[0], "status": *status}
	if *in >= 0 {
		req["usage"] = map[string]any{"prompt_tokens": *in, "completion_tokens": *out, "prompt_tokens_details": map[string]int64{"cached_tokens": *cached}}
	}
	a, err := f.open(ctx, io)
	if err != nil {
		return err
	}
	defer a.close()
	b, _ := json.Marshal(req)
	m, err := a.conn.NC.Request(settle.SettleSubject(a.store.HoldsStream()), b, 10*time.Second)
	if err != nil {
		return fmt.Errorf("settle: no keygate answered: %w", err)
	}
	var rep struct {
		Settlement *settle.Settlement `json:"settlement"`
		Error      string             `json:"error"`
		Unknown    bool               `json:"unknown"`
	}
	if err := json.Unmarshal(m.Data, &rep); err != nil {
		return fmt.Errorf("settle: unreadable answer: %w", err)
	}
	switch {
	case rep.Unknown:
		return &ExitError{Code: ExitFailure, Err: fmt.Errorf("reservation %s not found", pos[0])}
	case rep.Error != "":
		return fmt.Errorf("settle: %s", rep.Error)
	}
	if f.json {
		return json.NewEncoder(io.Out).Encode(rep.Settlement)
	}
	st := rep.Settlement
	fmt.Fprintf(io.Out, "%s: %s, %d tokens in, %d out, cost %s %s\n", st.Reservation, st.Status, st.TokensIn, st.TokensOut, st.CostText, st.Currency)
	return nil
}
