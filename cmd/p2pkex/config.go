package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/p2pkex/p2pkex/api/server"
	"github.com/p2pkex/p2pkex/inbox"
	"github.com/p2pkex/p2pkex/node"
	"github.com/p2pkex/p2pkex/protocol"
)

// configFile is the repo's configuration, JSON, written atomically (a
// temporary file renamed over it) with mode 0600. A repo without one (made
// before it existed) runs with the defaults. The daemon reads it; its flags
// override it.
const configFile = "config.json"

// config is the content of config.json. Every field's default is in
// defaultConfig.
type config struct {
	// Listen: the addresses the daemon listens on (--listen overrides).
	// Default node.DefaultListenAddrs: TCP and QUIC on every interface,
	// ports chosen by the system.
	Listen []string `json:"listen"`
	// Bootstrap: full multiaddrs (ending in /p2p/<peer ID>) of the peers
	// the DHT joins through (--bootstrap overrides). Default empty: the
	// node contacts no one on its own.
	Bootstrap []string `json:"bootstrap"`
	// Relays: full multiaddrs of circuit relay v2 peers the daemon uses
	// when it is not publicly reachable (--relays overrides). Default
	// empty: no relays.
	Relays []string `json:"relays"`
	// Suites: the suites every node of the repo offers and accepts, most
	// preferred first (--suite overrides). Default
	// protocol.DefaultSuites: MLKEM768X25519, then X25519.
	Suites    []string        `json:"suites"`
	Discovery discoveryConfig `json:"discovery"`
	Limits    limitsConfig    `json:"limits"`
	Messages  messagesConfig  `json:"messages"`
	Trust     trustConfig     `json:"trust"`
	// Admission: config_admission.go.
	Admission admissionConfig `json:"admission"`
}

type trustConfig struct {
	// Policy: what the daemon does when a peer's exchange key changes in
	// a way its rotation records do not account for (docs/SECURITY.md,
	// "Trust"): "tofu" refuses it for verified peers, "strict" always,
	// "accept" never (--trust-policy overrides). Every command that runs a
	// node applies it, with or without a daemon. Default "tofu".
	Policy string `json:"policy"`
	// RequirePQ: offer and accept only post-quantum suites; a peer that
	// offers none fails the exchange (--require-pq overrides). Default
	// false.
	RequirePQ bool `json:"require_pq"`
}

type discoveryConfig struct {
	// MDNS: announce and look for p2pkex nodes on the local network
	// (--no-mdns turns it off). Default true.
	MDNS bool `json:"mdns"`
	// DHT: run the p2pkex Kademlia DHT (--no-dht turns it off). Default true.
	DHT bool `json:"dht"`
	// DHTServer: answer DHT queries even when not known to be publicly
	// reachable (--dht-server turns it on). Default false.
	DHTServer bool `json:"dht_server"`
	// Rendezvous: the DHT namespace p2pkex nodes advertise and look up.
	// Default node.DefaultRendezvous ("p2pkex/1.0.0").
	Rendezvous string `json:"rendezvous"`
}

type limitsConfig struct {
	// InboundTotal: inbound exchanges running at once. Default
	// node.DefaultMaxInbound (256).
	InboundTotal int `json:"inbound_total"`
	// InboundPerPeer: inbound exchanges of one peer, running or waiting.
	// Default node.DefaultMaxInboundPerPeer (2).
	InboundPerPeer int `json:"inbound_per_peer"`
	// NoticeSize: the largest notice in bytes (--notice-size overrides).
	// Default protocol.DefaultNoticeSize (1024).
	NoticeSize int `json:"notice_size"`
	// PhaseTimeout bounds each phase of an exchange. Default
	// protocol.DefaultPhaseTimeout ("10s").
	PhaseTimeout duration `json:"phase_timeout"`
}

type messagesConfig struct {
	// Grace: how long messages under the previous epoch are accepted after
	// a new exchange. Default node.DefaultMessageGrace ("1m0s").
	Grace duration `json:"grace"`
	// InboxMax: the daemon keeps at most this many received messages in
	// the repo's inbox.db, dropping the oldest. Default
	// inbox.DefaultMaxCount (1000).
	InboxMax int `json:"inbox_max"`
	// InboxMaxAge: a kept message older than this is dropped (and never
	// shown). Default inbox.DefaultMaxAge ("720h0m0s", 30 days).
	InboxMaxAge duration `json:"inbox_max_age"`
}

// duration is a time.Duration written as a Go duration string ("10s").
type duration time.Duration

func (d duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

func (d *duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("a duration is a string such as \"10s\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = duration(v)
	return nil
}

func defaultConfig() *config {
	return &config{
		Listen:    append([]string{}, node.DefaultListenAddrs...),
		Bootstrap: []string{},
		Relays:    []string{},
		Suites:    suiteNames(protocol.DefaultSuites()),
		Discovery: discoveryConfig{MDNS: true, DHT: true, Rendezvous: node.DefaultRendezvous},
		Limits: limitsConfig{
			InboundTotal:   node.DefaultMaxInbound,
			InboundPerPeer: node.DefaultMaxInboundPerPeer,
			NoticeSize:     protocol.DefaultNoticeSize,
			PhaseTimeout:   duration(protocol.DefaultPhaseTimeout),
		},
		Messages: messagesConfig{Grace: duration(node.DefaultMessageGrace),
			InboxMax: inbox.DefaultMaxCount, InboxMaxAge: duration(inbox.DefaultMaxAge)},
		Trust:     trustConfig{Policy: node.TrustPolicyNames[0]},
		Admission: defaultAdmissionConfig(),
	}
}

// loadConfig reads dir's config.json over the defaults; a repo without one
// gets the defaults. Fields missing from the file keep their defaults;
// unknown fields are an error (a misspelt setting must not pass silently).
func loadConfig(dir string) (*config, error) {
	cfg := defaultConfig()
	if st, err := os.Stat(dir); err == nil && !st.IsDir() {
		return nil, fmt.Errorf("repo %s is not a directory", dir)
	}
	path := filepath.Join(dir, configFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return cfg, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return nil, fmt.Errorf("%s: empty file (delete it to run on the defaults)", path)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(cfg); err != nil {
		return nil, fmt.Errorf("%s: %s", path, jsonProblem(b, err))
	}
	if dec.More() {
		return nil, fmt.Errorf("%s: more than one JSON value", path)
	}
	if err := cfg.check(); err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	return cfg, nil
}

// check validates every setting.
func (c *config) check() error {
	for _, a := range c.Listen {
		if _, err := server.ParseMultiaddr(a); err != nil {
			return fmt.Errorf("listen: %v", err)
		}
	}
	if _, err := peerAddrs("bootstrap", c.Bootstrap); err != nil {
		return err
	}
	if _, err := peerAddrs("relays", c.Relays); err != nil {
		return err
	}
	if c.Discovery.Rendezvous == "" {
		return errors.New("discovery.rendezvous is empty")
	}
	l := c.Limits
	if l.InboundTotal < 1 || l.InboundPerPeer < 1 {
		return errors.New("limits.inbound_total and limits.inbound_per_peer must be at least 1")
	}
	if l.NoticeSize < protocol.MinNoticeSize || l.NoticeSize > protocol.MaxNoticeSize {
		return fmt.Errorf("limits.notice_size %d outside [%d, %d]", l.NoticeSize, protocol.MinNoticeSize, protocol.MaxNoticeSize)
	}
	if l.PhaseTimeout <= 0 {
		return errors.New("limits.phase_timeout must be positive")
	}
	if err := c.Admission.check(l.InboundTotal); err != nil {
		return err
	}
	if c.Messages.Grace < 0 {
		return errors.New("messages.grace must not be negative")
	}
	if c.Messages.InboxMax < 1 {
		return errors.New("messages.inbox_max must be at least 1")
	}
	if c.Messages.InboxMaxAge <= 0 {
		return errors.New("messages.inbox_max_age must be positive")
	}
	if _, err := node.ParseTrustPolicy(c.Trust.Policy); err != nil {
		return fmt.Errorf("trust.policy: %v", err)
	}
	if len(c.Suites) == 0 {
		return errors.New("suites is empty")
	}
	if _, err := parseSuites(c.Suites, "suites"); err != nil { // nodeconfig.go
		return err
	}
	return nil
}

func suiteNames(suites []protocol.Suite) []string {
	var out []string
	for _, s := range suites {
		out = append(out, s.String())
	}
	return out
}

// jsonProblem says what is wrong with config.json in its own terms: the
// line, the setting and the kind of value wanted, never a Go type.
func jsonProblem(b []byte, err error) string {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return fmt.Sprintf("line %d: not valid JSON (%s)", lineOf(b, syn.Offset), syn.Error())
	case errors.As(err, &typ):
		want := map[string]string{"string": "a string", "bool": "true or false", "slice": "a list", "struct": "an object"}[typ.Type.Kind().String()]
		if want == "" {
			want = "a number"
		}
		if typ.Field == "" {
			return fmt.Sprintf("line %d: want an object of settings, not %s", lineOf(b, typ.Offset), typ.Value)
		}
		return fmt.Sprintf("%s: want %s, not %s", typ.Field, want, typ.Value)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "not valid JSON (it ends too early)"
	}
	// Unknown fields and the settings' own checks (durations).
	return strings.TrimPrefix(err.Error(), "json: ")
}

func lineOf(b []byte, offset int64) int {
	if offset > int64(len(b)) {
		offset = int64(len(b))
	}
	return 1 + bytes.Count(b[:offset], []byte("\n"))
}

// peerAddrs parses full multiaddrs (with an address and /p2p/<peer ID>),
// merging the addresses of one peer.
func peerAddrs(what string, addrs []string) ([]peer.AddrInfo, error) {
	var out []peer.AddrInfo
	index := map[peer.ID]int{}
	for _, s := range addrs {
		pi, err := server.ParsePeerAddr(s)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		if len(pi.Addrs) == 0 {
			return nil, usagef("%s %q: needs an address before /p2p/<peer ID>", what, s)
		}
		if i, ok := index[pi.ID]; ok {
			out[i].Addrs = append(out[i].Addrs, pi.Addrs...)
			continue
		}
		index[pi.ID] = len(out)
		out = append(out, *pi)
	}
	return out, nil
}

// writeConfig writes cfg to dir/config.json atomically: a temporary file in
// dir, synced, renamed over the old one.
func writeConfig(dir string, cfg *config) error {
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(dir, configFile), append(b, '\n'), 0o600)
}

// writeFileAtomic replaces path with b: readers see the old content or the
// new, never a part.
func writeFileAtomic(path string, b []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", filepath.Base(path), err)
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err := f.Chmod(mode); err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		return fmt.Errorf("write %s: %w", filepath.Base(path), err)
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", filepath.Base(path), err)
	}
	ok = true
	return nil
}

// daemonConfig merges the repo's network settings with the daemon's flags
// (which win) into node options: listen addresses, NAT, discovery. The
// settings every node of the repo shares come from nodeSettings.
func daemonConfig(cfg *config, c cliFlags) ([]node.Option, error) {
	var opts []node.Option
	listen := cfg.Listen
	if c.IsSet("listen") {
		listen = c.StringSlice("listen")
	}
	for _, a := range listen {
		if _, err := server.ParseMultiaddr(a); err != nil {
			return nil, err
		}
	}
	if len(listen) > 0 {
		opts = append(opts, node.WithListenAddrs(listen...))
	}
	// The protocol, limits, admission and trust settings: nodeSettings
	// (nodeconfig.go).

	natOpts, err := natConfig(cfg, c)
	if err != nil {
		return nil, err
	}
	opts = append(opts, natOpts...)

	noDHT := c.Bool("no-dht")
	if noDHT && c.IsSet("bootstrap") {
		return nil, usagef("--bootstrap needs the DHT: drop --no-dht")
	}
	if noDHT && c.Bool("dht-server") {
		return nil, usagef("--dht-server needs the DHT: drop --no-dht")
	}
	if cfg.Discovery.MDNS && !c.Bool("no-mdns") {
		opts = append(opts, node.WithMDNS(node.DefaultMDNSService))
	}
	if noDHT || !cfg.Discovery.DHT && !c.IsSet("bootstrap") && !c.Bool("dht-server") {
		return opts, nil
	}
	boot, what := cfg.Bootstrap, "bootstrap (config.json)"
	if c.IsSet("bootstrap") {
		boot, what = c.StringSlice("bootstrap"), "--bootstrap"
	}
	peers, err := peerAddrs(what, boot)
	if err != nil {
		return nil, err
	}
	dhtOpts := []node.DHTOption{node.WithRendezvous(cfg.Discovery.Rendezvous)}
	if cfg.Discovery.DHTServer || c.Bool("dht-server") {
		dhtOpts = append(dhtOpts, node.WithDHTMode(node.DHTModeServer))
	}
	return append(opts, node.WithDHT(peers, dhtOpts...)), nil
}

// natConfig turns --relay, --relays (or config.json's relays) and
// --reachability into node options. Hole punching is always on.
func natConfig(cfg *config, c cliFlags) ([]node.Option, error) {
	opts := []node.Option{node.WithHolePunching()}
	if c.Bool("relay") {
		opts = append(opts, node.WithRelayService())
	}
	relays, what := cfg.Relays, "relays (config.json)"
	if c.IsSet("relays") {
		relays, what = c.StringSlice("relays"), "--relays"
	}
	peers, err := peerAddrs(what, relays)
	if err != nil {
		return nil, err
	}
	if len(peers) > 0 {
		opts = append(opts, node.WithStaticRelays(peers))
	}
	switch r := c.String("reachability"); r {
	case "":
	case "public":
		if c.Bool("relay") {
			break // --relay declares it already
		}
		opts = append(opts, node.WithReachability(network.ReachabilityPublic))
	case "private":
		if c.Bool("relay") {
			return nil, usagef("--relay needs a public node: drop --reachability private")
		}
		opts = append(opts, node.WithReachability(network.ReachabilityPrivate))
	default:
		return nil, usagef("--reachability %q: want public or private", r)
	}
	return opts, nil
}

// cliFlags is what daemonConfig reads of a command's flags.
type cliFlags interface {
	IsSet(string) bool
	Bool(string) bool
	String(string) string
	StringSlice(string) []string
}
