package flood

import (
	"flag"
	"fmt"
	"os"
	"testing"
	"time"
)

func TestMain(m *testing.M) {
	if ok, err := Role(); ok {
		if err != nil {
			fmt.Fprintln(os.Stderr, "flood role:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

var (
	flagIdentities = flag.Int("flood.identities", 1000, "fresh identities")
	flagAddrs      = flag.Int("flood.addrs", 128, "their source addresses")
	flagSubnets    = flag.Int("flood.subnets", 8, "the /24s the addresses are spread over")
	flagStreams    = flag.Int("flood.streams", 3, "half-open exchanges each identity keeps open")
	flagMsgStreams = flag.Int("flood.msgstreams", 1, "message streams each identity keeps open")
	flagRetry      = flag.Duration("flood.retry", 500*time.Millisecond, "pause before an identity opens again")
	flagWarmup     = flag.Duration("flood.warmup", 3*time.Second, "flood before the honest peer starts")
	flagDuration   = flag.Duration("flood.duration", 10*time.Second, "the honest peer's run under the flood")
	flagReconnect  = flag.Bool("flood.reconnect", true, "the honest peer needs a new connection under the flood")
	flagConns      = flag.Int("flood.serverconns", 0, "raise the server's inbound connection limit to this (0: libp2p's, scaled)")
)

// BenchmarkFlood floods a server node with fresh identities from many
// source addresses, inside network namespaces it makes (root and ip
// needed), while a known peer runs exchanges and messages; it prints the
// report (package doc). It fails only when the honest peer fails.
//
//	go test -run '^$' -bench '^BenchmarkFlood$' -benchtime 1x ./internal/flood/ [-flood.identities N ...]
func BenchmarkFlood(b *testing.B) {
	r := Run(b, Config{
		Identities: *flagIdentities, Addrs: *flagAddrs, Subnets: *flagSubnets,
		Streams: *flagStreams, MsgStreams: *flagMsgStreams, Retry: *flagRetry,
		Warmup: *flagWarmup, Duration: *flagDuration, Reconnect: *flagReconnect,
		ServerConns: *flagConns,
	})
	r.Print(os.Stdout)
	h := r.Honest
	b.ReportMetric(100*float64(h.ExchangesOK)/float64(max(h.Exchanges, 1)), "honest-ok-%")
	b.ReportMetric(float64(h.Percentile(99).Microseconds())/1000, "honest-p99-ms")
	b.ReportMetric(float64(r.DuringPeak.RSS)/1e6, "peak-RSS-MB")
	if why := r.Failed(); why != "" {
		b.Fatal(why)
	}
}
