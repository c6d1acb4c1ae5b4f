package serve_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/internal/apikey"
	"github.com/keygate/keygate/internal/natstest"
	"github.com/keygate/keygate/internal/store"
)

// BenchmarkSparseKeys: 50,000 keys, each checked once a minute by one
// keygate under the default limit (600/1m), so that every check is its
// key's first in a window. It reports, for the second minute (every key's
// record cached, its first window over), the JetStream operations per
// check by kind, and the in-process check's p50 and p99.
func BenchmarkSparseKeys(b *testing.B) {
	const nKeys, minute = 50_000, time.Minute
	ns := natstest.Run(b)
	cfg := testConfig(b, ns.ClientURL())
	cfg.DefaultRateLimit = "600/1m"
	e := start(b, cfg)
	_, js := natstest.Connect(b, ns)
	reqs := bulkChecks(b, js, nKeys)
	st := openStore(b, e, ns)
	setBalance(b, e.ctx, st, "acme", 1e12)
	waitFilter(b, e)
	check := e.inst.Authorization()
	pass := func() []time.Duration {
		lat := make([]time.Duration, 0, nKeys)
		gap := minute / nKeys
		next := time.Now()
		for _, r := range reqs {
			time.Sleep(time.Until(next))
			next = next.Add(gap)
			begin := time.Now()
			resp, _ := check.Check(e.ctx, r)
			lat = append(lat, time.Since(begin))
			if resp.GetOkResponse() == nil {
				b.Fatalf("a sparse key was denied: %s", resp.GetDeniedResponse().GetBody())
			}
			authz.Release(resp)
		}
		return lat
	}
	b.ResetTimer()
	for range b.N {
		pass()
		before := fleetOps(b, e)
		lat := pass()
		after := fleetOps(b, e)
		slices.Sort(lat)
		for _, op := range []string{"limits writes", "limits reads", "usage writes", "usage reads", "key lookups"} {
			b.ReportMetric((after[op]-before[op])/nKeys, strings.ReplaceAll(op, " ", "-")+"/check")
		}
		b.ReportMetric(float64(lat[len(lat)/2])/1e6, "p50-ms")
		b.ReportMetric(float64(lat[len(lat)*99/100])/1e6, "p99-ms")
	}
	b.ReportMetric(0, "ns/op")
}

// fleetOps reads e's counts of NATS operations from its metrics.
func fleetOps(b *testing.B, e *env) map[string]float64 {
	out := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(e.metrics(b)))
	for sc.Scan() {
		line := sc.Text()
		for _, m := range []struct{ prefix, op string }{
			{`keygate_fleet_writes_total{bucket="limits"}`, "limits writes"},
			{`keygate_fleet_reads_total{bucket="limits"}`, "limits reads"},
			{`keygate_fleet_writes_total{bucket="usage"}`, "usage writes"},
			{`keygate_fleet_reads_total{bucket="usage"}`, "usage reads"},
			{`keygate_store_lookups_total{table="keys"}`, "key lookups"},
		} {
			if strings.HasPrefix(line, m.prefix+" ") {
				v, _ := strconv.ParseFloat(line[len(m.prefix)+1:], 64)
				out[m.op] = v
			}
		}
	}
	return out
}

// bulkChecks writes n key records straight into the keys bucket and
// returns a check for each.
func bulkChecks(b *testing.B, js jetstream.JetStream, n int) []*authv3.CheckRequest {
	reqs := make([]*authv3.CheckRequest, n)
	format := apikey.DefaultFormat()
	for i := range n {
		plain, _ := format.Mint(apikey.LivePrefix)
		rec, _ := json.Marshal(&store.Key{ID: fmt.Sprintf("key_sparse%012d", i), Hash: apikey.Hash(plain), AccountID: "acme",
			Env: store.EnvLive, Scopes: []string{"*"}, Masked: format.Mask(plain), CreatedAt: time.Now()})
		if _, err := js.PublishAsync("$KV.keygate_keys."+store.HashEntry(apikey.Hash(plain)), rec); err != nil {
			b.Fatal(err)
		}
		reqs[i] = checkRequest(plain)
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(5 * time.Minute):
		b.Fatal("bulk key creation did not finish")
	}
	return reqs
}
