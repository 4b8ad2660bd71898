// Package bench is the load generator behind "p2pkex bench": one responder
// node and many initiator nodes in this process on 127.0.0.1, exchanges
// under load, measured against the crypto floor of an exchange
// (protocol.Floor) and libp2p's Noise handshake in the same run.
//
// The command line is a thin layer over it: flags make a [Config], [Run]
// (one run) or [RunSeries] (several, alternating stores) measure, and the
// result is printed as JSON. The JSON field names of [Summary] and
// [Series] are read by tools/chart and tools/perf and described in
// docs/PERFORMANCE.md: keep them.
//
// The package depends on node, protocol and peerstore, never the other way.
package bench

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	libp2pprotocol "github.com/libp2p/go-libp2p/core/protocol"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	"github.com/libp2p/go-libp2p/p2p/muxer/yamux"
	"github.com/libp2p/go-libp2p/p2p/net/connmgr"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"
	"github.com/libp2p/go-libp2p/p2p/protocol/ping"
	"github.com/libp2p/go-libp2p/p2p/security/noise"
	tls "github.com/libp2p/go-libp2p/p2p/security/tls"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/p2pkex/p2pkex/internal/forgetful"
	"github.com/p2pkex/p2pkex/internal/procs"
	"github.com/p2pkex/p2pkex/internal/procstat"
	"github.com/p2pkex/p2pkex/internal/toolio"
	"github.com/p2pkex/p2pkex/node"
	ps "github.com/p2pkex/p2pkex/peerstore"
	"github.com/p2pkex/p2pkex/protocol"
)

// How many samples the side measurements take. They are fixed, not
// options, so that runs compare.
const (
	benchFloorRounds  = 200 // crypto floor of an exchange, timed in-process
	benchNoiseRounds  = 200 // Noise XX handshakes over loopback TCP
	benchIdleRounds   = 100 // exchanges one at a time, alternating with Noise handshakes
	benchPingRounds   = 50  // libp2p ping round trips on loopback
	benchExchangeWait = time.Minute
)

// Config says what to run. Start from [DefaultConfig]; each field is the
// "p2pkex bench" flag of the same name.
type Config struct {
	// Peers is the number of initiator nodes: at least Concurrency; 0
	// means Concurrency. With BothKeys and Peers above Concurrency every
	// exchange is a first contact from a new identity, one per peer (Count
	// and Duration are then not used).
	Peers       int
	Concurrency int           // exchanges in flight
	Count       int           // exchanges to run, unless Duration is set
	Duration    time.Duration // run for this long instead of Count (0: Count)
	Suite       protocol.Suite
	NoticeSize  int
	BothKeys    bool   // under load, both records are sent (else: known, phase 2 empty)
	Security    string // "" (libp2p's choice), "tls" or "noise"
	Transport   string // "tcp" (with yamux) or "quic"
	Muxer       string // with tcp: "" (libp2p's yamux) or "yamux-readbuf" (yamux reading through a 4 KiB buffer)
	// Setups, if any, are the connection setups RunSeries compares, one
	// run each per round, in turn; they replace Transport, Security and
	// Muxer. Each is TRANSPORT[/SECURITY[/MUXER]]: tcp/tls, tcp/noise,
	// quic, tcp/tls/yamux-readbuf.
	Setups     []string
	NewStreams bool          // a new stream for every exchange (node.WithStreamIdleTimeout(0))
	Latency    time.Duration // mocknet latency per direction for the round trips; 0 skips them
	RTTSamples int           // exchanges timed on mocknet, per case
	CPUProfile string        // CPU profile of the load phase, to this file
	// CPUProfileExchanges: first contacts only, a CPU profile of each
	// timed group of exchanges, DIR/NNNNNN.prof (the group's first
	// identity), without the untimed hosts, connections and closes between
	// them; merge with go tool pprof -proto BINARY DIR/*.prof. DIR.1,
	// DIR.2, ... with several runs.
	CPUProfileExchanges string
	MemProfile          string // heap profiles of the exchanges in flight (and FILE.base)
	Store               string // "bolt", "memory" or "both" (with RunSeries)
	Runs                int    // runs per store (RunSeries)

	fresh     bool   // every exchange a first contact from a new identity
	setupName string // the entry of Setups this run is
	storeRoot string // where the bbolt stores go
	noRTTs    bool   // skip the mocknet round trips (runs after the first)
}

// DefaultConfig returns the defaults of "p2pkex bench".
func DefaultConfig() Config {
	return Config{
		Concurrency: 16,
		Count:       2000,
		Suite:       protocol.SuiteMLKEM768X25519,
		NoticeSize:  protocol.DefaultNoticeSize,
		Transport:   "tcp",
		Latency:     20 * time.Millisecond,
		RTTSamples:  5,
		Store:       "bolt",
		Runs:        1,
	}
}

// ConfigError is a Config that cannot run. Its message names the option
// by its "p2pkex bench" flag.
type ConfigError struct{ Msg string }

func (e *ConfigError) Error() string { return e.Msg }

func configErrorf(format string, args ...any) error {
	return &ConfigError{fmt.Sprintf(format, args...)}
}

// Validate checks cfg and fills in what it implies (Peers 0, first
// contacts). It returns a *ConfigError.
func (cfg *Config) Validate() error {
	if cfg.Store != "bolt" && cfg.Store != "memory" && cfg.Store != "both" {
		return configErrorf("--store %q: want bolt, memory or both", cfg.Store)
	}
	if cfg.Runs < 1 {
		return configErrorf("--runs must be at least 1")
	}
	if cfg.Security != "" && cfg.Security != "tls" && cfg.Security != "noise" {
		return configErrorf("--security %q: want tls or noise", cfg.Security)
	}
	if cfg.Transport != "tcp" && cfg.Transport != "quic" {
		return configErrorf("--transport %q: want tcp or quic", cfg.Transport)
	}
	if cfg.Muxer != "" && cfg.Muxer != "yamux" && cfg.Muxer != "yamux-readbuf" {
		return configErrorf("--muxer %q: want yamux or yamux-readbuf", cfg.Muxer)
	}
	if cfg.Transport == "quic" && (cfg.Muxer != "" || cfg.Security == "noise") {
		return configErrorf("--transport quic brings its own security (TLS 1.3) and streams: no noise, no --muxer")
	}
	for _, s := range cfg.Setups {
		c := *cfg
		c.Setups = nil
		if err := c.setup(s); err != nil {
			return err
		}
		if err := c.Validate(); err != nil {
			return configErrorf("--compare %q: %v", s, err)
		}
	}
	if !cfg.Suite.Known() {
		return configErrorf("--suite %v: unknown", cfg.Suite)
	}
	if cfg.Concurrency < 1 {
		return configErrorf("--concurrency must be at least 1")
	}
	if cfg.Peers == 0 {
		cfg.Peers = cfg.Concurrency
	}
	cfg.fresh = cfg.BothKeys && cfg.Peers > cfg.Concurrency
	if cfg.fresh {
		// First contacts from Peers new identities, one exchange each.
		cfg.Count, cfg.Duration = cfg.Peers, 0
	}
	if cfg.Peers < cfg.Concurrency {
		return configErrorf("--peers %d is below --concurrency %d: exchanges with one peer never overlap, so each one in flight needs its own initiator", cfg.Peers, cfg.Concurrency)
	}
	if cfg.Duration < 0 {
		return configErrorf("--duration must be positive")
	}
	if cfg.Duration == 0 && cfg.Count < 1 {
		return configErrorf("--count must be at least 1")
	}
	if cfg.NoticeSize < protocol.MinNoticeSize || cfg.NoticeSize > protocol.MaxNoticeSize {
		return configErrorf("--notice-size %d outside [%d, %d]", cfg.NoticeSize, protocol.MinNoticeSize, protocol.MaxNoticeSize)
	}
	if cfg.CPUProfileExchanges != "" && (!cfg.fresh || cfg.CPUProfile != "") {
		return configErrorf("--cpuprofile-exchanges profiles the timed exchanges of first contacts (--keys both, --peers above --concurrency), not with --cpuprofile")
	}
	if cfg.Latency < 0 || cfg.RTTSamples < 1 {
		return configErrorf("--latency must not be negative and --rtt-samples must be at least 1")
	}
	return nil
}

// Fresh reports whether cfg (validated) runs first contacts from new
// identities.
func (cfg *Config) Fresh() bool { return cfg.fresh }

// Series reports whether cfg asks for RunSeries: several runs, both
// stores, or several connection setups.
func (cfg *Config) Series() bool { return cfg.Runs > 1 || cfg.Store == "both" || len(cfg.Setups) > 0 }

// setup sets Transport, Security and Muxer from s, as in Setups.
func (cfg *Config) setup(s string) error {
	parts := strings.Split(s, "/")
	if len(parts) > 3 || parts[0] == "" {
		return configErrorf("--compare %q: want TRANSPORT[/SECURITY[/MUXER]], as tcp/noise", s)
	}
	parts = append(parts, "", "")
	cfg.Transport, cfg.Security, cfg.Muxer = parts[0], parts[1], parts[2]
	return nil
}

// connOptions returns the responder's listen address and the libp2p
// options of every host for cfg's transport, security and muxer.
func connOptions(cfg *Config) (listen string, opts []libp2p.Option) {
	listen = "/ip4/127.0.0.1/tcp/0"
	if cfg.Transport == "quic" {
		listen = "/ip4/127.0.0.1/udp/0/quic-v1"
	}
	switch cfg.Security {
	case "tls":
		opts = append(opts, libp2p.Security(tls.ID, tls.New))
	case "noise":
		opts = append(opts, libp2p.Security(noise.ID, noise.New))
	}
	if cfg.Muxer == "yamux-readbuf" {
		// libp2p's yamux reads unbuffered (ReadBufSize 0), trusting the
		// secure channel to buffer: every frame header and body is a
		// Read of its own on it. This one reads through a buffer.
		c := *yamux.DefaultTransport.Config()
		c.ReadBufSize = 4096
		opts = append(opts, libp2p.Muxer(yamux.ID, (*yamux.Transport)(&c)))
	}
	return listen, opts
}

// Run validates cfg and runs the bench once on cfg.Store ("bolt" or
// "memory"), writing progress lines to progress. The bbolt stores go in a
// temporary directory removed at the end.
func Run(ctx context.Context, cfg Config, progress io.Writer) (*Summary, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Store == "both" {
		return nil, configErrorf("--store both takes several runs: use RunSeries")
	}
	var sum *Summary
	err := withStoreRoot(&cfg, func() (err error) {
		sum, err = runOne(ctx, &cfg, progress)
		return err
	})
	return sum, err
}

// RunSeries validates cfg and runs the bench cfg.Runs times per store,
// alternating the stores when cfg.Store is "both".
func RunSeries(ctx context.Context, cfg Config, progress io.Writer) (*Series, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	var out *Series
	err := withStoreRoot(&cfg, func() (err error) {
		out, err = runSeries(ctx, &cfg, progress)
		return err
	})
	return out, err
}

// withStoreRoot runs f with cfg.storeRoot a new temporary directory,
// removed afterwards.
func withStoreRoot(cfg *Config, f func() error) error {
	tmp, err := os.MkdirTemp("", "p2pkex-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	cfg.storeRoot = tmp
	return f()
}

// Summary is the JSON summary. Times are in the unit their name says;
// ratios are plain numbers. docs/PERFORMANCE.md describes every field.
type Summary struct {
	Store       string `json:"store"` // "bolt" or "memory"
	Suite       string `json:"suite"`
	Keys        string `json:"keys"`
	Transport   string `json:"transport"`
	Security    string `json:"security"`
	Streams     string `json:"streams"`         // "kept" (the default) or "new" (--new-streams)
	Setup       string `json:"setup,omitempty"` // the connection setup compared (--compare), as given
	Muxer       string `json:"muxer,omitempty"` // --muxer, if given
	NoticeSize  int    `json:"notice_size"`
	Peers       int    `json:"peers"`
	Concurrency int    `json:"concurrency"`
	GOMAXPROCS  int    `json:"gomaxprocs"`
	CPUs        int    `json:"cpus"`
	GoVersion   string `json:"go_version"`
	LoadAvg     string `json:"loadavg_before,omitempty"`

	// The load.
	Exchanges     int      `json:"exchanges"`
	Failures      int      `json:"failures"`
	FailureSample []string `json:"failure_sample,omitempty"`
	WallS         float64  `json:"wall_s"`
	ExchangesPerS float64  `json:"exchanges_per_s"`
	P50Ms         float64  `json:"p50_ms"`
	P90Ms         float64  `json:"p90_ms"`
	P99Ms         float64  `json:"p99_ms"`
	MaxMs         float64  `json:"max_ms"`
	CPUSPerExch   float64  `json:"cpu_s_per_exchange"`
	CoresUsed     float64  `json:"cores_used"`
	// Null exchanges (null.go) under the same load: the stream alone, on
	// kept or new streams as the load's exchanges, NullWrites writes each
	// (both sides).
	NullExchanges   int     `json:"null_exchanges,omitempty"`
	NullCPUSPerExch float64 `json:"null_cpu_s_per_exchange,omitempty"`
	NullPerS        float64 `json:"null_exchanges_per_s,omitempty"`
	NullStreams     string  `json:"null_streams,omitempty"`
	NullWrites      int     `json:"null_writes_per_exchange,omitempty"`
	HeapPerFlight   float64 `json:"heap_bytes_per_inflight"`
	HeapAllocFlight float64 `json:"heap_alloc_bytes_per_inflight"`
	HeapInFlight    int     `json:"heap_sample_inflight"`

	// The responder's store during the load: CommitExchange, and the
	// reads (Lookup, Peer, ActiveSession), from call to return; and the
	// reads per exchange of the load.
	StoreCommitP50Ms  float64 `json:"store_commit_p50_ms"`
	StoreCommitP99Ms  float64 `json:"store_commit_p99_ms"`
	StoreReadP99Ms    float64 `json:"store_read_p99_ms"`
	StoreReadsPerExch float64 `json:"store_reads_per_exchange"`

	// The crypto floor, measured in this run.
	FloorCPUS            float64    `json:"floor_cpu_s_per_exchange"`
	FloorWallS           float64    `json:"floor_wall_s_per_exchange"`
	FloorCPUSBeforeAfter [2]float64 `json:"floor_cpu_s_before_after"`
	RatioCPUVsFloor      float64    `json:"ratio_cpu_vs_floor"`
	// The floor again, run beside the load (floorProbe).
	FloorInLoadCPUS        float64 `json:"floor_cpu_s_in_load,omitempty"`
	FloorInLoadSamples     int     `json:"floor_in_load_samples,omitempty"`
	RatioCPUVsFloorInLoad  float64 `json:"ratio_cpu_vs_floor_in_load,omitempty"`
	RatioNullVsFloorInLoad float64 `json:"ratio_null_vs_floor_in_load,omitempty"`
	// The floor plus the null exchange, over the floor: the least
	// ratio_cpu_vs_floor_in_load an exchange making the same writes can
	// reach over libp2p here; and what the exchange costs beyond both (p2pkex's own code,
	// its allocations and their collection), over the floor.
	RatioFloorNullInLoad  float64 `json:"ratio_floor_plus_null_vs_floor_in_load,omitempty"`
	RatioOwnVsFloorInLoad float64 `json:"ratio_own_vs_floor_in_load,omitempty"`
	FloorRatePerS         float64 `json:"floor_rate_per_s"`
	RatioRateVsFloor      float64 `json:"ratio_rate_vs_floor"`
	// CPUs ÷ the floor beside the load, and the rate against it.
	FloorInLoadRatePerS    float64 `json:"floor_rate_in_load_per_s,omitempty"`
	RatioRateVsFloorInLoad float64 `json:"ratio_rate_vs_floor_in_load,omitempty"`

	// The anchors, measured in this run.
	NoiseCPUS            float64    `json:"noise_handshake_s"`
	NoiseCPUSBeforeAfter [2]float64 `json:"noise_handshake_s_before_after"`
	RatioVsNoise         float64    `json:"ratio_vs_noise"`
	NoiseP50Ms           float64    `json:"noise_handshake_p50_ms"`
	IdleExchangeP50Ms    float64    `json:"exchange_p50_idle_ms"`
	RatioP50VsNoise      float64    `json:"ratio_p50_idle_vs_noise"`
	PingRTTMs            float64    `json:"ping_rtt_ms"`

	// First contacts from new identities (--keys both --peers above
	// --concurrency): the timed part is the exchanges only; *_all counts
	// the whole run, libp2p's connections included.
	FreshIdentities    int     `json:"fresh_identities,omitempty"`
	CPUSPerContactAll  float64 `json:"cpu_s_per_first_contact_all,omitempty"`
	ContactsPerSAll    float64 `json:"first_contacts_per_s_all,omitempty"`
	KnownPeers         int     `json:"known_peers,omitempty"`
	HeapPerKnownPeer   float64 `json:"heap_bytes_per_known_peer,omitempty"`
	StoreBytes         int64   `json:"store_bytes,omitempty"`
	StoreBytesPerPeer  float64 `json:"store_bytes_per_known_peer,omitempty"`
	StoreOpenMs        float64 `json:"store_open_ms,omitempty"`
	LookupP50Us        float64 `json:"peer_lookup_p50_us,omitempty"`
	LookupP99Us        float64 `json:"peer_lookup_p99_us,omitempty"`
	SessionLookupP99Us float64 `json:"session_lookup_p99_us,omitempty"`
	StateLookupP50Us   float64 `json:"state_lookup_p50_us,omitempty"`
	StateLookupP99Us   float64 `json:"state_lookup_p99_us,omitempty"`

	// Round trips on mocknet.
	LatencyMs              float64 `json:"mocknet_latency_ms,omitempty"`
	MocknetRTTMs           float64 `json:"mocknet_rtt_ms,omitempty"`
	RTTsKnownKeys          float64 `json:"rtts_known_keys,omitempty"`
	RTTsBothKeys           float64 `json:"rtts_both_keys,omitempty"`
	RTTsKnownKeysInitiator float64 `json:"rtts_known_keys_initiator,omitempty"`
	RTTsBothKeysInitiator  float64 `json:"rtts_both_keys_initiator,omitempty"`
}

func ms(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e6 }

// percentile returns the p-th percentile (0 < p <= 1) of sorted durations,
// nearest rank.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted))*p+0.999999) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return percentile(s, 0.5)
}

func runOne(ctx context.Context, cfg *Config, progress io.Writer) (*Summary, error) {
	sum := &Summary{
		Store:       cfg.Store,
		Suite:       cfg.Suite.String(),
		Keys:        map[bool]string{false: "known", true: "both"}[cfg.BothKeys],
		Transport:   cfg.Transport,
		Security:    cfg.Security,
		Streams:     map[bool]string{false: "kept", true: "new"}[cfg.NewStreams],
		Setup:       cfg.setupName,
		Muxer:       cfg.Muxer,
		NoticeSize:  cfg.NoticeSize,
		Peers:       cfg.Peers,
		Concurrency: cfg.Concurrency,
		GOMAXPROCS:  runtime.GOMAXPROCS(0),
		CPUs:        procs.CPUs(),
		GoVersion:   runtime.Version(),
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		sum.LoadAvg = strings.Join(strings.Fields(string(b))[:3], " ")
	}
	say := func(format string, args ...any) { fmt.Fprintf(progress, "bench: "+format+"\n", args...) }
	if cfg.MemProfile != "" {
		// Finer heap samples than the default one per 512 KiB, so that
		// the profile resolves what one exchange holds.
		runtime.MemProfileRate = 4096
	}

	// The floor and the Noise handshakes are measured before and after the
	// load, and their means used: on a machine shared with other work the
	// two differ, and the spread shows by how much.
	var before, after anchors
	if err := before.measure(cfg, say); err != nil {
		return nil, err
	}
	load := runLoad
	if cfg.fresh {
		load = runFresh
	}
	if err := load(ctx, cfg, sum, say, progress); err != nil {
		return nil, err
	}
	if err := after.measure(cfg, say); err != nil {
		return nil, err
	}
	floor := (before.floorCPU + after.floorCPU) / 2
	sum.FloorCPUS = floor.Seconds()
	sum.FloorWallS = ((before.floorWall + after.floorWall) / 2).Seconds()
	sum.FloorCPUSBeforeAfter = [2]float64{before.floorCPU.Seconds(), after.floorCPU.Seconds()}
	sum.FloorRatePerS = float64(sum.CPUs) / floor.Seconds()
	sum.NoiseCPUS = ((before.noiseCPU + after.noiseCPU) / 2).Seconds()
	sum.NoiseCPUSBeforeAfter = [2]float64{before.noiseCPU.Seconds(), after.noiseCPU.Seconds()}
	sum.RatioCPUVsFloor = sum.CPUSPerExch / sum.FloorCPUS
	if sum.FloorInLoadCPUS > 0 {
		sum.RatioCPUVsFloorInLoad = sum.CPUSPerExch / sum.FloorInLoadCPUS
		if sum.NullExchanges > 0 {
			sum.RatioNullVsFloorInLoad = sum.NullCPUSPerExch / sum.FloorInLoadCPUS
			sum.RatioFloorNullInLoad = 1 + sum.RatioNullVsFloorInLoad
			sum.RatioOwnVsFloorInLoad = sum.RatioCPUVsFloorInLoad - sum.RatioFloorNullInLoad
		}
		sum.FloorInLoadRatePerS = float64(sum.CPUs) / sum.FloorInLoadCPUS
		sum.RatioRateVsFloorInLoad = sum.ExchangesPerS / sum.FloorInLoadRatePerS
	}
	sum.RatioRateVsFloor = sum.ExchangesPerS / sum.FloorRatePerS
	if sum.RatioFloorNullInLoad > 0 {
		say("CPU per exchange %.2fx the floor beside the load: the floor and the stream alone (null exchanges) %.2fx, the exchange's own %.2fx",
			sum.RatioCPUVsFloorInLoad, sum.RatioFloorNullInLoad, sum.RatioOwnVsFloorInLoad)
	}
	sum.RatioVsNoise = sum.CPUSPerExch / sum.NoiseCPUS
	if sum.NoiseP50Ms > 0 { // not measured with first contacts
		sum.RatioP50VsNoise = sum.IdleExchangeP50Ms / sum.NoiseP50Ms
	}

	if cfg.Latency > 0 && !cfg.noRTTs {
		say("round trips on mocknet, latency %v per direction", cfg.Latency)
		if err := measureRTTs(ctx, cfg, sum); err != nil {
			return nil, fmt.Errorf("mocknet round trips: %w", err)
		}
	}
	return sum, nil
}

// anchors are the side measurements the load is compared with.
type anchors struct {
	floorCPU, floorWall time.Duration // per exchange, both sides
	noiseCPU            time.Duration // per handshake, both sides
}

func (a *anchors) measure(cfg *Config, say func(string, ...any)) error {
	say("crypto floor, %d exchanges of %v%s", benchFloorRounds, cfg.Suite, map[bool]string{true: " with both records checked (first contact)"}[cfg.fresh])
	f, err := newFloorWork(cfg)
	if err != nil {
		return fmt.Errorf("crypto floor: %w", err)
	}
	if err := f(); err != nil { // one untimed round warms caches and lazily initialised tables
		return fmt.Errorf("crypto floor: %w", err)
	}
	cpu0 := procstat.CPU()
	t0 := time.Now()
	for range benchFloorRounds {
		if err := f(); err != nil {
			return fmt.Errorf("crypto floor: %w", err)
		}
	}
	a.floorWall = time.Since(t0) / benchFloorRounds
	// Process CPU time, like the exchanges' (the untimed first round of
	// MeasureFloor is spread over the others): unlike wall time, it does
	// not grow when other processes take the CPU.
	if a.floorCPU = (procstat.CPU() - cpu0) / benchFloorRounds; a.floorCPU <= 0 {
		a.floorCPU = a.floorWall
	}
	say("Noise XX, %d handshakes over loopback TCP", benchNoiseRounds)
	if a.noiseCPU, err = measureNoise(benchNoiseRounds); err != nil {
		return fmt.Errorf("noise handshakes: %w", err)
	}
	return nil
}

// floorProbe runs the crypto floor beside the load, one exchange's worth
// every 20 ms (a few per cent of one CPU), on a goroutine locked to its OS
// thread, and takes that thread's CPU time. Unlike the floor measured
// before and after the load, it runs under the same conditions as the
// exchanges: the same caches, the same competition from other processes.
// Its CPU time is taken out of the load's.
type floorProbe struct {
	stop, done chan struct{}
	cpu        time.Duration
	n          int
	err        error
}

func startFloorProbe(cfg *Config) *floorProbe {
	p := &floorProbe{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		f, err := newFloorWork(cfg)
		if err == nil {
			err = f() // warm-up
		}
		if err != nil {
			p.err = err
			return
		}
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		t0, ok := threadCPU()
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-p.stop:
				if t1, ok1 := threadCPU(); ok && ok1 {
					p.cpu = t1 - t0
				} else {
					p.n = 0 // not measured on this system
				}
				return
			case <-tick.C:
			}
			if err := f(); err != nil {
				p.err = err
				return
			}
			p.n++
		}
	}()
	return p
}

func (p *floorProbe) finish() {
	close(p.stop)
	<-p.done
}

// noiseBench runs libp2p Noise XX handshakes between two Ed25519
// identities over loopback TCP connections.
type noiseBench struct {
	tpt [2]*noise.Transport
	ids [2]peer.ID
	l   net.Listener
}

func newNoiseBench() (*noiseBench, error) {
	nb := &noiseBench{}
	for i := range nb.tpt {
		sk, _, err := crypto.GenerateEd25519Key(rand.Reader)
		if err != nil {
			return nil, err
		}
		if nb.tpt[i], err = noise.New(noise.ID, sk, nil); err != nil {
			return nil, err
		}
		if nb.ids[i], err = peer.IDFromPrivateKey(sk); err != nil {
			return nil, err
		}
	}
	var err error
	if nb.l, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		return nil, err
	}
	return nb, nil
}

func (nb *noiseBench) close() { nb.l.Close() }

// dial returns both ends of a new loopback TCP connection.
func (nb *noiseBench) dial() ([2]net.Conn, error) {
	c, s, err := loopbackPair(nb.l)
	return [2]net.Conn{c, s}, err
}

// handshake runs one handshake over cs, until both sides have finished,
// and closes cs.
func (nb *noiseBench) handshake(cs [2]net.Conn) error {
	defer cs[0].Close()
	defer cs[1].Close()
	ctx := context.Background()
	done := make(chan error, 1)
	go func() {
		_, err := nb.tpt[1].SecureInbound(ctx, cs[1], nb.ids[0])
		done <- err
	}()
	_, err := nb.tpt[0].SecureOutbound(ctx, cs[0], nb.ids[1])
	return errors.Join(err, <-done)
}

// measureNoise runs rounds handshakes over connections dialled
// beforehand, in batches, and returns the process CPU time per handshake
// (both sides).
func measureNoise(rounds int) (cpu time.Duration, err error) {
	nb, err := newNoiseBench()
	if err != nil {
		return 0, err
	}
	defer nb.close()
	// One untimed handshake warms up.
	cs, err := nb.dial()
	if err != nil {
		return 0, err
	}
	if err := nb.handshake(cs); err != nil {
		return 0, err
	}
	// The connections of a batch are dialled before its CPU time is taken.
	const batch = 50
	for done := 0; done < rounds; {
		conns := make([][2]net.Conn, 0, batch)
		for range min(batch, rounds-done) {
			cs, err := nb.dial()
			if err != nil {
				return 0, err
			}
			conns = append(conns, cs)
		}
		start := procstat.CPU()
		for i, cs := range conns {
			if err = nb.handshake(cs); err != nil {
				for _, rest := range conns[i+1:] {
					rest[0].Close()
					rest[1].Close()
				}
				return 0, err
			}
		}
		cpu += procstat.CPU() - start
		done += len(conns)
	}
	return cpu / time.Duration(rounds), nil
}

// loopbackPair returns both ends of a new TCP connection to l.
func loopbackPair(l net.Listener) (client, server net.Conn, err error) {
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			c = nil
		}
		accepted <- c
	}()
	if client, err = net.Dial("tcp", l.Addr().String()); err != nil {
		return nil, nil, err
	}
	if server = <-accepted; server == nil {
		client.Close()
		return nil, nil, errors.New("accept failed")
	}
	return client, server, nil
}

// newBenchStore returns a node's store: bbolt in a new directory under
// cfg.storeRoot, opened as the daemon opens its own (cmd/p2pkex/repo.go), or memory.
// With --keys both (and known identities) it forgets every record.
func newBenchStore(cfg *Config) (ps.Store, error) {
	var st ps.Store = ps.NewMemory()
	if cfg.Store == "bolt" {
		dir, err := os.MkdirTemp(cfg.storeRoot, "store-")
		if err != nil {
			return nil, err
		}
		if st, err = ps.OpenBolt(dir); err != nil {
			return nil, err
		}
	}
	if cfg.BothKeys && !cfg.fresh {
		return forgetful.New(st), nil
	}
	return st, nil
}

// benchNodes are the nodes of the load.
type benchNodes struct {
	responder  *node.Node
	initiators []*node.Node
	stores     []ps.Store
	hosts      []host.Host
	gate       gate        // holds every write of every exchange while closed
	timed      *timedStore // the responder's store, timed
}

func (b *benchNodes) close() {
	var wg sync.WaitGroup
	for _, n := range append([]*node.Node{b.responder}, b.initiators...) {
		if n != nil {
			wg.Add(1)
			go func() {
				defer wg.Done()
				n.Close()
			}()
		}
	}
	wg.Wait()
	// The initiators' hosts first: a host that closes while a thousand
	// peers push identify updates to it can hang in libp2p's event bus.
	for _, h := range b.hosts[min(1, len(b.hosts)):] {
		if h != nil {
			wg.Add(1)
			go func() {
				defer wg.Done()
				h.Close()
			}()
		}
	}
	waitClosed(&wg, "initiators' hosts")
	if len(b.hosts) > 0 && b.hosts[0] != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b.hosts[0].Close()
		}()
		waitClosed(&wg, "responder's host")
	}
	for _, s := range b.stores {
		if s != nil {
			s.Close()
		}
	}
}

// waitClosed waits for hosts closing, but not forever: libp2p's event bus
// can deadlock a host's Close (an identify push blocked on a subscriber
// that the closing host no longer drains). A run that has its figures must
// not hang on that; the stuck goroutines are left behind, and said so.
func waitClosed(wg *sync.WaitGroup, what string) {
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		fmt.Fprintf(os.Stderr, "bench: %s did not close within 20 s (libp2p event bus); going on\n", what)
	}
}

func startBenchNodes(ctx context.Context, cfg *Config) (*benchNodes, error) {
	b := &benchNodes{}
	ok := false
	defer func() {
		if !ok {
			b.close()
		}
	}()
	// Without metrics, as the node's own resource manager runs unless
	// metrics are asked for (node.WithMetrics).
	rm, err := rcmgr.NewResourceManager(rcmgr.NewFixedLimiter(rcmgr.InfiniteLimits), rcmgr.WithMetricsDisabled())
	if err != nil {
		return nil, err
	}
	cm, err := connmgr.NewConnManager(cfg.Peers+16, 2*cfg.Peers+32)
	if err != nil {
		return nil, err
	}
	// The nodes attach to hosts built here, so that their streams can pass
	// through the gate, with the options node.New would use for its own
	// host (node.HostOptions), and --security.
	common := []node.Option{node.WithSuites(cfg.Suite), node.WithNoticeSize(cfg.NoticeSize)}
	if cfg.NewStreams {
		common = append(common, node.WithStreamIdleTimeout(0))
	}
	listen, security := connOptions(cfg)
	b.hosts = make([]host.Host, 1+cfg.Peers)
	b.stores = make([]ps.Store, 1+cfg.Peers)
	start := func(i int, libp2pOpts []libp2p.Option, opts ...node.Option) (*node.Node, error) {
		hostOpts, err := node.HostOptions(slices.Concat(common, opts,
			[]node.Option{node.WithLibp2pOptions(slices.Concat(security, libp2pOpts)...)})...)
		if err != nil {
			return nil, err
		}
		h, err := libp2p.New(hostOpts...)
		if err != nil {
			return nil, err
		}
		b.hosts[i] = h
		// The store under test is the responder's (the daemon under load);
		// the initiators stand for daemons on other machines, each with a
		// disk of its own, which 64 stores syncing one disk here are not.
		scfg := cfg
		if i > 0 {
			scfg = &Config{Store: "memory", BothKeys: cfg.BothKeys}
		}
		if b.stores[i], err = newBenchStore(scfg); err != nil {
			return nil, err
		}
		if i == 0 {
			b.timed = &timedStore{Store: b.stores[0]}
			b.stores[0] = b.timed
		}
		return node.New(ctx, slices.Concat(common, []node.Option{node.WithHost(gateHost{h, &b.gate}), node.WithStore(b.stores[i])}, opts)...)
	}
	b.responder, err = start(0, []libp2p.Option{libp2p.ResourceManager(rm), libp2p.ConnectionManager(cm)},
		node.WithListenAddrs(listen),
		node.WithInboundLimits(max(node.DefaultMaxInbound, 2*cfg.Concurrency), node.DefaultMaxInboundPerPeer),
		// Every initiator comes from 127.0.0.1: one origin.
		node.WithOriginLimit(max(node.DefaultMaxInboundPerOrigin, 2*cfg.Concurrency), node.DefaultOriginPrefixV4, node.DefaultOriginPrefixV6))
	if err != nil {
		if b.hosts[0] == nil {
			rm.Close()
		}
		return nil, fmt.Errorf("responder: %w", err)
	}
	target := peer.AddrInfo{ID: b.responder.ID(), Addrs: b.responder.Host().Addrs()}
	b.initiators = make([]*node.Node, cfg.Peers)
	errs := make([]error, cfg.Peers)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 2*runtime.GOMAXPROCS(0))
	for i := range b.initiators {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			n, err := start(1+i, []libp2p.Option{libp2p.NoListenAddrs})
			if err != nil {
				errs[i] = err
				return
			}
			b.initiators[i] = n
			errs[i] = n.Connect(ctx, target)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("initiators: %w", err)
	}
	ok = true
	return b, nil
}

// waitInstalled waits until the responder installed, for every initiator,
// the epoch the initiator holds: the responder finishes half a round trip
// after the initiator returns.
func (b *benchNodes) waitInstalled(ctx context.Context) error {
	deadline := time.Now().Add(benchExchangeWait)
	for _, a := range b.initiators {
		ka, err := a.ActiveKey(b.responder.ID())
		if err != nil {
			continue // all its exchanges failed
		}
		for {
			kb, err := b.responder.ActiveKey(a.ID())
			if err == nil && kb.Epoch >= ka.Epoch {
				if kb.Epoch != ka.Epoch || kb.ID != ka.ID {
					return fmt.Errorf("responder and initiator %s disagree on the key", a.ID())
				}
				break
			}
			if time.Now().After(deadline) || ctx.Err() != nil {
				return fmt.Errorf("responder did not install the key of %s", a.ID())
			}
			time.Sleep(time.Millisecond)
		}
	}
	return nil
}

// runLoad starts the nodes, warms them up, measures exchanges one at a time
// and pings, then runs the load and fills in its figures.
func runLoad(ctx context.Context, cfg *Config, sum *Summary, say func(string, ...any), progress io.Writer) error {
	say("starting 1 responder and %d initiators on 127.0.0.1", cfg.Peers)
	nodes, err := startBenchNodes(ctx, cfg)
	if err != nil {
		return err
	}
	defer nodes.close()
	resp := nodes.responder.ID()
	// What the connections run on, as negotiated.
	if cs := nodes.initiators[0].Host().Network().ConnsToPeer(resp); len(cs) > 0 {
		st := cs[0].ConnState()
		sum.Transport, sum.Security = st.Transport, string(st.Security)
		if sum.Security == "" && st.Transport == "quic-v1" {
			sum.Security = "TLS 1.3 (QUIC)"
		}
		if st.StreamMultiplexer != "" {
			sum.Transport += "+" + string(st.StreamMultiplexer)
		}
	}
	exchange := func(n *node.Node) (time.Duration, error) {
		ctx, cancel := context.WithTimeout(ctx, benchExchangeWait)
		defer cancel()
		t := time.Now()
		_, err := n.Exchange(ctx, resp)
		return time.Since(t), err
	}

	// Warm-up: two exchanges per initiator, so that identify has run on
	// every connection, (with --keys known) both sides hold each other's
	// record, and every cache has seen every peer before the heap baseline.
	say("warm-up: two exchanges per initiator")
	var wg sync.WaitGroup
	for round := range 2 {
		sem := make(chan struct{}, cfg.Concurrency)
		errs := make([]error, len(nodes.initiators))
		for i, n := range nodes.initiators {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				_, errs[i] = exchange(n)
			}()
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			return fmt.Errorf("warm-up round %d: %w", round+1, err)
		}
		if err := nodes.waitInstalled(ctx); err != nil {
			return err
		}
	}

	// Exchanges one at a time on an existing connection, each followed by
	// a Noise XX handshake over a fresh loopback TCP connection (dialled
	// outside the timing), so that both see the same conditions.
	say("%d exchanges one at a time, each followed by a Noise XX handshake; %d pings", benchIdleRounds, benchPingRounds)
	nb, err := newNoiseBench()
	if err != nil {
		return err
	}
	defer nb.close()
	idle := make([]time.Duration, 0, benchIdleRounds)
	hs := make([]time.Duration, 0, benchIdleRounds)
	var null *nullExchange
	for i := range benchIdleRounds {
		var steps func() (ini, res []protocol.Event)
		if i == 0 {
			steps = recordSteps(nodes.initiators[0], nodes.responder)
		}
		d, err := exchange(nodes.initiators[0])
		if err != nil {
			return fmt.Errorf("exchange one at a time: %w", err)
		}
		if i == 0 {
			if err := nodes.waitInstalled(ctx); err != nil {
				return err
			}
			ini, res := steps()
			if null, err = newNullExchange(ini, res, cfg.NoticeSize, !cfg.NewStreams); err != nil {
				return err
			}
		}
		idle = append(idle, d)
		cs, err := nb.dial()
		if err != nil {
			return err
		}
		t := time.Now()
		if err := nb.handshake(cs); err != nil {
			return fmt.Errorf("noise handshake: %w", err)
		}
		hs = append(hs, time.Since(t))
	}
	sum.IdleExchangeP50Ms = ms(median(idle))
	sum.NoiseP50Ms = ms(median(hs))
	rtt, err := pingRTT(ctx, nodes.initiators[0], resp, benchPingRounds)
	if err != nil {
		return fmt.Errorf("ping: %w", err)
	}
	sum.PingRTTMs = ms(rtt)
	if err := nodes.waitInstalled(ctx); err != nil {
		return err
	}

	// The load.
	free := make(chan *node.Node, len(nodes.initiators))
	for _, n := range nodes.initiators {
		free <- n
	}
	var (
		next, done, failed, inFlight atomic.Int64
		mu                           sync.Mutex
		latencies                    = make([]time.Duration, 0, max(cfg.Count, 1024))
		failures                     []string
	)
	more := func() bool { return next.Add(1) <= int64(cfg.Count) }
	if cfg.Duration > 0 {
		end := time.Now().Add(cfg.Duration)
		more = func() bool { return time.Now().Before(end) }
	}
	stopProfile, err := toolio.StartCPUProfile(cfg.CPUProfile)
	if err != nil {
		return err
	}
	defer stopProfile()
	var start time.Time // of the load

	say("load: %d exchanges in flight, %s", cfg.Concurrency, map[bool]string{
		true: fmt.Sprintf("for %v", cfg.Duration), false: fmt.Sprintf("%d exchanges", cfg.Count)}[cfg.Duration > 0])
	stopProgress := make(chan struct{})
	progressDone := make(chan struct{})
	probe := startFloorProbe(cfg)
	nodes.timed.reset()
	start = time.Now()
	cpu0 := procstat.CPU()
	go func() {
		defer close(progressDone)
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		last, lastT := int64(0), start
		for {
			select {
			case <-stopProgress:
				return
			case t := <-tick.C:
				d := done.Load()
				fmt.Fprintf(progress, "bench: %6.1fs  %d done, %d failed, %.0f/s, %d in flight\n",
					t.Sub(start).Seconds(), d, failed.Load(), float64(d-last)/t.Sub(lastT).Seconds(), inFlight.Load())
				last, lastT = d, t
			}
		}
	}()
	for range cfg.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			defer func() {
				mu.Lock()
				latencies = append(latencies, mine...)
				mu.Unlock()
			}()
			for more() && ctx.Err() == nil {
				n := <-free
				inFlight.Add(1)
				d, err := exchange(n)
				inFlight.Add(-1)
				free <- n
				if err != nil {
					failed.Add(1)
					mu.Lock()
					if len(failures) < 5 {
						failures = append(failures, err.Error())
					}
					mu.Unlock()
				} else {
					mine = append(mine, d)
				}
				done.Add(1)
			}
		}()
	}
	wg.Wait()
	wall := time.Since(start)
	close(stopProgress)
	<-progressDone
	if err := ctx.Err(); err != nil {
		return err
	}
	installErr := nodes.waitInstalled(ctx)
	stopProfile() // the load only, not what follows
	probe.finish()
	cpu := procstat.CPU() - cpu0 - probe.cpu
	if probe.err != nil {
		return fmt.Errorf("crypto floor beside the load: %w", probe.err)
	}
	if probe.n > 0 {
		sum.FloorInLoadCPUS = (probe.cpu / time.Duration(probe.n)).Seconds()
		sum.FloorInLoadSamples = probe.n
	}

	sum.StoreCommitP50Ms, sum.StoreCommitP99Ms, sum.StoreReadP99Ms = nodes.timed.percentiles()
	if len(latencies) > 0 {
		sum.StoreReadsPerExch = float64(nodes.timed.readCount()) / float64(len(latencies))
	}
	slices.Sort(latencies)
	sum.Exchanges = len(latencies)
	sum.Failures = int(failed.Load())
	sum.FailureSample = failures
	if installErr != nil {
		sum.Failures++
		sum.FailureSample = append(sum.FailureSample, installErr.Error())
	}
	sum.WallS = wall.Seconds()
	sum.ExchangesPerS = float64(len(latencies)) / wall.Seconds()
	sum.P50Ms = ms(percentile(latencies, 0.50))
	sum.P90Ms = ms(percentile(latencies, 0.90))
	sum.P99Ms = ms(percentile(latencies, 0.99))
	if len(latencies) > 0 {
		sum.MaxMs = ms(latencies[len(latencies)-1])
		sum.CPUSPerExch = cpu.Seconds() / float64(len(latencies))
		sum.CoresUsed = cpu.Seconds() / wall.Seconds()
	}
	say("load done: %d exchanges, %d failed, %.0f/s, p50 %.2f ms, p99 %.2f ms", sum.Exchanges, sum.Failures,
		sum.ExchangesPerS, sum.P50Ms, sum.P99Ms)

	say("heap: %d exchanges in flight, brought to rest", cfg.Concurrency)
	if err := measureHeap(ctx, cfg, nodes, exchange, sum); err != nil {
		return err
	}

	// Last: the null protocol's handler changes what identify announces,
	// and its streams linger a while, which would move the heap baseline.
	if null != nil {
		n := min(max(sum.Exchanges, cfg.Concurrency), benchNullMax)
		say("null exchanges: %d, %d in flight (the stream of the load's exchanges, %d writes each, without the exchange)", n, cfg.Concurrency, null.writes())
		if err := runNull(ctx, nodes.hosts[0], nodes.hosts[1:], null, n, cfg.Concurrency, sum); err != nil {
			return fmt.Errorf("null exchanges: %w", err)
		}
	}
	return nil
}

// measureHeap runs the load again, untimed, with cfg.Concurrency exchanges
// in flight. Once every worker has finished one exchange it closes the
// gate: each exchange runs on to its next write and stops there, holding
// what it holds while it waits for the network. When the process is at
// rest, the heap in use after a collection, less the baseline taken before,
// divided by the exchanges in flight, is the heap per exchange in flight.
// (Sampling the heap in the middle of the timed load instead measures the
// scheduler: which exchanges happen to be preempted in the middle of their
// cryptography; and runtime.GC does not return there while a thousand
// exchanges are runnable.)
func measureHeap(ctx context.Context, cfg *Config, nodes *benchNodes,
	exchange func(*node.Node) (time.Duration, error), sum *Summary) error {
	if err := nodes.waitInstalled(ctx); err != nil {
		return err
	}
	runtime.GC()
	var before, now runtime.MemStats
	runtime.ReadMemStats(&before)
	if cfg.MemProfile != "" {
		if err := toolio.WriteProfile("heap", cfg.MemProfile+".base"); err != nil {
			return err
		}
	}
	free := make(chan *node.Node, len(nodes.initiators))
	for _, n := range nodes.initiators {
		free <- n
	}
	var inFlight, done, failed atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range cfg.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				n := <-free
				inFlight.Add(1)
				if _, err := exchange(n); err != nil {
					failed.Add(1)
				}
				inFlight.Add(-1)
				free <- n
				done.Add(1)
			}
		}()
	}
	for done.Load() < int64(cfg.Concurrency) && ctx.Err() == nil {
		time.Sleep(time.Millisecond)
	}
	nodes.gate.close()
	rest := waitForRest(10 * time.Second)
	runtime.GC()
	runtime.ReadMemStats(&now)
	flight := inFlight.Load()
	var profErr error
	if cfg.MemProfile != "" {
		profErr = toolio.WriteProfile("heap", cfg.MemProfile)
	}
	close(stop)
	nodes.gate.open()
	wg.Wait()
	if profErr != nil {
		return profErr
	}
	if !rest {
		return errors.New("heap: the exchanges did not come to rest at the gate")
	}
	if f := failed.Load(); f > 0 {
		return fmt.Errorf("heap: %d exchanges failed", f)
	}
	sum.HeapInFlight = int(flight)
	if flight > 0 {
		sum.HeapPerFlight = (float64(now.HeapInuse) - float64(before.HeapInuse)) / float64(flight)
		sum.HeapAllocFlight = (float64(now.HeapAlloc) - float64(before.HeapAlloc)) / float64(flight)
	}
	return nodes.waitInstalled(ctx)
}

// waitForRest waits until the process uses less than a tenth of one CPU
// over 50 ms, or until timeout.
func waitForRest(timeout time.Duration) bool {
	const interval = 50 * time.Millisecond
	end := time.Now().Add(timeout)
	for time.Now().Before(end) {
		c := procstat.CPU()
		time.Sleep(interval)
		if procstat.CPU()-c < interval/10 {
			return true
		}
	}
	return false
}

// pingRTT returns the median of rounds libp2p ping round trips from n to p.
func pingRTT(ctx context.Context, n *node.Node, p peer.ID, rounds int) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, benchExchangeWait)
	defer cancel()
	results := ping.Ping(ctx, n.Host(), p)
	rtts := make([]time.Duration, 0, rounds)
	for range rounds + 1 { // the first one negotiates the stream
		r, ok := <-results
		if !ok {
			return 0, ctx.Err()
		}
		if r.Error != nil {
			return 0, r.Error
		}
		rtts = append(rtts, r.RTT)
	}
	return median(rtts[1:]), nil
}

// measureRTTs runs exchanges between two nodes on a mocknet whose links
// delay every write by cfg.Latency, and expresses their duration in round
// trips: until the responder installed the key (the whole exchange), and
// until the initiator's Exchange returned.
func measureRTTs(ctx context.Context, cfg *Config, sum *Summary) error {
	sum.LatencyMs = ms(cfg.Latency)
	var err error
	for _, both := range []bool{false, true} {
		var whole, initiator time.Duration
		var rtt time.Duration
		whole, initiator, rtt, err = mocknetExchanges(ctx, cfg, both)
		if err != nil {
			return err
		}
		sum.MocknetRTTMs = ms(rtt)
		r := func(d time.Duration) float64 { return float64(d) / float64(rtt) }
		if both {
			sum.RTTsBothKeys, sum.RTTsBothKeysInitiator = r(whole), r(initiator)
		} else {
			sum.RTTsKnownKeys, sum.RTTsKnownKeysInitiator = r(whole), r(initiator)
		}
	}
	return nil
}

// mocknetExchanges runs cfg.RTTSamples exchanges between two nodes on a
// mocknet, after one untimed exchange on the same connection. It returns
// the median time until the responder installed the key and until the
// initiator returned, and the median ping round trip of the link.
func mocknetExchanges(ctx context.Context, cfg *Config, bothKeys bool) (whole, initiator, rtt time.Duration, err error) {
	mn := mocknet.New()
	defer mn.Close()
	mn.SetLinkDefaults(mocknet.LinkOptions{Latency: cfg.Latency})
	var nodes [2]*node.Node
	for i := range nodes {
		sk, _, err := crypto.GenerateEd25519Key(rand.Reader)
		if err != nil {
			return 0, 0, 0, err
		}
		h, err := mn.AddPeer(sk, ma.StringCast(fmt.Sprintf("/ip4/127.0.0.%d/tcp/4001", i+1)))
		if err != nil {
			return 0, 0, 0, err
		}
		ping.NewPingService(h)
		st, err := newBenchStore(&Config{Store: cfg.Store, storeRoot: cfg.storeRoot, BothKeys: bothKeys})
		if err != nil {
			return 0, 0, 0, err
		}
		defer st.Close()
		if nodes[i], err = node.New(ctx, node.WithHost(lagHost{h, cfg.Latency}), node.WithStore(st),
			node.WithSuites(cfg.Suite), node.WithNoticeSize(cfg.NoticeSize)); err != nil {
			return 0, 0, 0, err
		}
		defer nodes[i].Close()
	}
	if err := mn.LinkAll(); err != nil {
		return 0, 0, 0, err
	}
	a, b := nodes[0], nodes[1]
	if err := a.Connect(ctx, peer.AddrInfo{ID: b.ID(), Addrs: b.Host().Addrs()}); err != nil {
		return 0, 0, 0, err
	}
	events, stop := b.Subscribe(0)
	defer stop()
	one := func(check bool) (time.Duration, time.Duration, error) {
		ctx, cancel := context.WithTimeout(ctx, benchExchangeWait)
		defer cancel()
		t := time.Now()
		info, err := a.Exchange(ctx, b.ID())
		if err != nil {
			return 0, 0, err
		}
		init := time.Since(t)
		if check && (info.SentOwnKey != bothKeys || info.ReceivedPeerKey != bothKeys) {
			return 0, 0, fmt.Errorf("phase 2 sent records %v/%v, want %v", info.SentOwnKey, info.ReceivedPeerKey, bothKeys)
		}
		for {
			select {
			case e := <-events:
				switch {
				case e.Kind == node.EventDone && e.Info.Epoch == info.Epoch:
					return e.Time.Sub(t), init, nil
				case e.Kind == node.EventFailed:
					return 0, 0, fmt.Errorf("responder: %w", e.Err)
				}
			case <-ctx.Done():
				return 0, 0, ctx.Err()
			}
		}
	}
	// The untimed first exchange waits for identify, after which the
	// stream's protocol is negotiated lazily.
	if _, _, err := one(false); err != nil {
		return 0, 0, 0, err
	}
	var wholes, inits []time.Duration
	for range cfg.RTTSamples {
		w, i, err := one(true)
		if err != nil {
			return 0, 0, 0, err
		}
		wholes, inits = append(wholes, w), append(inits, i)
	}
	if rtt, err = pingRTT(ctx, a, b.ID(), cfg.RTTSamples); err != nil {
		return 0, 0, 0, err
	}
	return median(wholes), median(inits), rtt, nil
}

// lagHost corrects one way in which mocknet departs from a network: closing
// a mocknet stream delivers what was written to it at once, without the
// link latency, so the last notice of an exchange (the initiator's
// PART_RECEIVED, written just before the initiator closes the stream) would
// arrive early and the responder finish half a round trip too soon. The
// streams of a lagHost close only after the link latency has passed.
type lagHost struct {
	host.Host
	lag time.Duration
}

func (h lagHost) NewStream(ctx context.Context, p peer.ID, pids ...libp2pprotocol.ID) (network.Stream, error) {
	s, err := h.Host.NewStream(ctx, p, pids...)
	if err != nil {
		return nil, err
	}
	return lagStream{s, h.lag}, nil
}

func (h lagHost) SetStreamHandler(pid libp2pprotocol.ID, handler network.StreamHandler) {
	h.Host.SetStreamHandler(pid, func(s network.Stream) { handler(lagStream{s, h.lag}) })
}

type lagStream struct {
	network.Stream
	lag time.Duration
}

func (s lagStream) Close() error {
	time.AfterFunc(s.lag, func() { _ = s.Stream.Close() })
	return nil
}

// gate holds every write of every exchange of the load while it is closed,
// so that the exchanges in flight come to rest for the heap measurement.
type gate struct{ closed atomic.Pointer[chan struct{}] }

func (g *gate) wait() {
	if ch := g.closed.Load(); ch != nil {
		<-*ch
	}
}

func (g *gate) close() {
	ch := make(chan struct{})
	g.closed.Store(&ch)
}

func (g *gate) open() {
	if ch := g.closed.Swap(nil); ch != nil {
		close(*ch)
	}
}

// gateHost passes the streams of its node through a gate.
type gateHost struct {
	host.Host
	gate *gate
}

func (h gateHost) NewStream(ctx context.Context, p peer.ID, pids ...libp2pprotocol.ID) (network.Stream, error) {
	s, err := h.Host.NewStream(ctx, p, pids...)
	if err != nil {
		return nil, err
	}
	return gateStream{s, h.gate}, nil
}

func (h gateHost) SetStreamHandler(pid libp2pprotocol.ID, handler network.StreamHandler) {
	h.Host.SetStreamHandler(pid, func(s network.Stream) { handler(gateStream{s, h.gate}) })
}

type gateStream struct {
	network.Stream
	gate *gate
}

func (s gateStream) Write(b []byte) (int, error) {
	s.gate.wait()
	return s.Stream.Write(b)
}

// timedStore times the responder's store calls during the load.
type timedStore struct {
	ps.Store
	mu             sync.Mutex
	commits, reads []time.Duration
}

func (s *timedStore) reset() {
	s.mu.Lock()
	s.commits, s.reads = s.commits[:0], s.reads[:0]
	s.mu.Unlock()
}

func (s *timedStore) note(to *[]time.Duration, t time.Time) {
	d := time.Since(t)
	s.mu.Lock()
	*to = append(*to, d)
	s.mu.Unlock()
}

func (s *timedStore) CommitExchange(c ps.Commit) error {
	defer s.note(&s.commits, time.Now())
	return s.Store.CommitExchange(c)
}

func (s *timedStore) Peer(p peer.ID) (*ps.PeerKey, error) {
	defer s.note(&s.reads, time.Now())
	return s.Store.Peer(p)
}

func (s *timedStore) Lookup(p peer.ID) (ps.PeerState, error) {
	defer s.note(&s.reads, time.Now())
	return s.Store.Lookup(p)
}

func (s *timedStore) ActiveSession(p peer.ID) (*ps.SessionKey, error) {
	defer s.note(&s.reads, time.Now())
	return s.Store.ActiveSession(p)
}

// readCount returns how many reads were timed.
func (s *timedStore) readCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.reads)
}

// percentiles returns the commits' median and 99th percentile and the
// reads' 99th percentile, in milliseconds.
func (s *timedStore) percentiles() (c50, c99, r99 float64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	slices.Sort(s.commits)
	slices.Sort(s.reads)
	return ms(percentile(s.commits, 0.5)), ms(percentile(s.commits, 0.99)), ms(percentile(s.reads, 0.99))
}
