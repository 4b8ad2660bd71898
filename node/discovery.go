package node

// Discovery: how p2pkex nodes find each other.
//
// Two mechanisms, both off in the library unless asked for:
//
//   - mDNS on the local network ([WithMDNS]): go-libp2p's mdns service
//     under the DNS-SD service type "_<name>._udp" (the daemon uses the name
//     "p2pkex").
//   - A Kademlia DHT of p2pkex nodes ([WithDHT]): go-libp2p-kad-dht under its
//     own protocol prefix (DefaultDHTPrefix, so the node never joins the
//     public IPFS DHT), reached through the bootstrap peers it is given and
//     no others, with a rendezvous: every node advertises itself as a
//     provider of the namespace DefaultRendezvous and looks up the other
//     providers of it (go-libp2p's p2p/discovery/routing).
//
// A discovered peer's addresses go into the host's peerstore, so that
// Exchange can dial it by peer ID, and the peer is reported once per
// mechanism as an EventDiscovered event and listed by DiscoveredPeers.
// Discovery never starts an exchange, nor even a connection, on its own:
// what to do with a discovered peer is the application's decision.

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	dht "github.com/libp2p/go-libp2p-kad-dht"
	"github.com/libp2p/go-libp2p/core/peer"
	lprotocol "github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/p2p/discovery/mdns"
	drouting "github.com/libp2p/go-libp2p/p2p/discovery/routing"
)

// Discovery defaults.
const (
	// DefaultMDNSService is the mDNS service name the daemon uses; as a
	// DNS-SD service type it is "_p2pkex._udp".
	DefaultMDNSService = "p2pkex"
	// DefaultDHTPrefix is the protocol prefix of the p2pkex DHT: its
	// protocol is "/p2pkex/kad/1.0.0", not the public IPFS DHT's
	// "/ipfs/kad/1.0.0".
	DefaultDHTPrefix = "/p2pkex"
	// DefaultRendezvous is the namespace p2pkex nodes advertise and look up
	// in the DHT.
	DefaultRendezvous = "p2pkex/1.0.0"
	// DefaultDiscoveryInterval is the longest wait between two DHT
	// lookups of the rendezvous. The first lookups come sooner: the first
	// as soon as the DHT's routing table holds a peer, then 1 s later,
	// doubling up to the interval.
	DefaultDiscoveryInterval = time.Minute
	// DiscoveredAddrTTL is how long a discovered peer's addresses stay in
	// the host's peerstore unless found again or connected.
	DiscoveredAddrTTL = 30 * time.Minute
)

// The bounds of one DHT round, so that an unreachable network never stalls
// the loop.
const (
	advertiseTimeout = 30 * time.Second
	findTimeout      = 30 * time.Second
	firstRoundDelay  = time.Second
)

// DiscoverySource says how a peer was discovered.
type DiscoverySource uint8

const (
	// SourceMDNS: found by mDNS on the local network.
	SourceMDNS DiscoverySource = iota + 1
	// SourceDHT: found at the DHT rendezvous.
	SourceDHT
)

func (s DiscoverySource) String() string {
	switch s {
	case SourceMDNS:
		return "mdns"
	case SourceDHT:
		return "dht"
	}
	return "unknown"
}

// DiscoveredPeer is a peer found by discovery.
type DiscoveredPeer struct {
	peer.AddrInfo
	// Sources lists every mechanism that found the peer, first one first.
	Sources []DiscoverySource
	// First and Last are when the peer was first and last found.
	First, Last time.Time
}

// DHTMode says whether the node's DHT answers queries.
type DHTMode uint8

const (
	// DHTModeAuto: a client until AutoNAT finds the node publicly
	// reachable, then a server (go-libp2p-kad-dht's ModeAuto). The default.
	DHTModeAuto DHTMode = iota
	// DHTModeServer: always a server, answering queries and storing
	// rendezvous records. Bootstrap nodes need it, and so does a network
	// on a LAN or loopback with no bootstrap node: AutoNAT never finds a
	// node reachable there, so in auto mode no node would serve the DHT.
	// Where bootstrap nodes serve it, the others need not: a server is
	// checked by every node that connects to it and refreshes its routing
	// table through its peers, so in a small network each server ends up
	// connected to nearly every other (tools/swarm: 30 servers used 2.6
	// times the CPU of 27 clients and 3 servers, and 200 servers in one
	// process starved it on two cores).
	DHTModeServer
	// DHTModeClient: only queries, never answers.
	DHTModeClient
)

func (m DHTMode) String() string {
	switch m {
	case DHTModeAuto:
		return "auto"
	case DHTModeServer:
		return "server"
	case DHTModeClient:
		return "client"
	}
	return "unknown"
}

// DHTOption configures the DHT of WithDHT.
type DHTOption func(*dhtConfig) error

type dhtConfig struct {
	bootstrap  []peer.AddrInfo
	mode       DHTMode
	prefix     string
	rendezvous string
	interval   time.Duration
}

type mdnsConfig struct {
	service string
}

// WithMDNS turns on mDNS discovery under the service name (DefaultMDNSService
// for the daemon's; a name without a leading "_" becomes the DNS-SD service
// type "_<name>._udp"). Default: off. mDNS announces the node's addresses to
// the whole local network and listens for others' announcements; the node
// must not use it where that is unwanted (tests run it only inside network
// namespaces they create). It works with WithHost too.
func WithMDNS(service string) Option {
	return func(c *config) error {
		if service == "" {
			return errors.New("WithMDNS: empty service name")
		}
		if strings.ContainsAny(service, " \t\r\n") {
			return fmt.Errorf("WithMDNS: service name %q contains white space", service)
		}
		c.mdns = &mdnsConfig{service: service}
		return nil
	}
}

// WithDHT turns on the Kademlia DHT with the p2pkex rendezvous. Default: off.
//
// bootstrap lists the peers the node joins the DHT through; they are the
// only peers it contacts on its own. With an empty list the node contacts
// no one: it still serves the DHT (in server mode) to peers that connect to
// it and joins through them. The DHT uses the protocol prefix
// DefaultDHTPrefix, the mode DHTModeAuto, the namespace DefaultRendezvous
// and the interval DefaultDiscoveryInterval unless DHT options say
// otherwise.
func WithDHT(bootstrap []peer.AddrInfo, opts ...DHTOption) Option {
	return func(c *config) error {
		d := &dhtConfig{
			mode:       DHTModeAuto,
			prefix:     DefaultDHTPrefix,
			rendezvous: DefaultRendezvous,
			interval:   DefaultDiscoveryInterval,
		}
		for _, ai := range bootstrap {
			if ai.ID == "" || len(ai.Addrs) == 0 {
				return fmt.Errorf("WithDHT: bootstrap peer %q needs an ID and an address", ai.ID)
			}
			d.bootstrap = append(d.bootstrap, ai)
		}
		for _, o := range opts {
			if err := o(d); err != nil {
				return err
			}
		}
		c.dht = d
		return nil
	}
}

// WithDHTMode sets the DHT mode. Default DHTModeAuto.
func WithDHTMode(m DHTMode) DHTOption {
	return func(d *dhtConfig) error {
		if m > DHTModeClient {
			return fmt.Errorf("WithDHTMode: unknown mode %d", m)
		}
		d.mode = m
		return nil
	}
}

// WithDHTPrefix sets the DHT's protocol prefix. Default DefaultDHTPrefix.
// "/ipfs" (the public IPFS DHT) is refused.
func WithDHTPrefix(prefix string) DHTOption {
	return func(d *dhtConfig) error {
		if !strings.HasPrefix(prefix, "/") || len(prefix) < 2 {
			return fmt.Errorf("WithDHTPrefix: %q must start with \"/\"", prefix)
		}
		if prefix == "/ipfs" {
			return errors.New("WithDHTPrefix: p2pkex does not join the public IPFS DHT")
		}
		d.prefix = prefix
		return nil
	}
}

// WithRendezvous sets the namespace advertised and looked up in the DHT.
// Default DefaultRendezvous.
func WithRendezvous(ns string) DHTOption {
	return func(d *dhtConfig) error {
		if ns == "" {
			return errors.New("WithRendezvous: empty namespace")
		}
		d.rendezvous = ns
		return nil
	}
}

// WithDiscoveryInterval sets the longest wait between two DHT lookups of the
// rendezvous. Default DefaultDiscoveryInterval.
func WithDiscoveryInterval(d time.Duration) DHTOption {
	return func(c *dhtConfig) error {
		if d <= 0 {
			return errors.New("WithDiscoveryInterval: interval must be positive")
		}
		c.interval = d
		return nil
	}
}

// discovery runs the node's discovery mechanisms.
type discovery struct {
	n      *Node
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mdns mdns.Service
	kad  *dht.IpfsDHT

	mu    sync.Mutex
	peers map[peer.ID]*DiscoveredPeer
}

// startDiscovery starts what the options turned on. On error it leaves
// nothing running.
func (n *Node) startDiscovery() (err error) {
	cfg := n.cfg
	if cfg.mdns == nil && cfg.dht == nil {
		return nil
	}
	d := &discovery{n: n, peers: map[peer.ID]*DiscoveredPeer{}}
	d.ctx, d.cancel = context.WithCancel(context.Background())
	defer func() {
		if err != nil {
			d.stop()
		}
	}()
	if c := cfg.dht; c != nil {
		mode := map[DHTMode]dht.ModeOpt{DHTModeAuto: dht.ModeAuto, DHTModeServer: dht.ModeServer, DHTModeClient: dht.ModeClient}[c.mode]
		opts := []dht.Option{
			dht.Mode(mode),
			dht.ProtocolPrefix(lprotocol.ID(c.prefix)),
		}
		if len(c.bootstrap) > 0 {
			opts = append(opts, dht.BootstrapPeers(c.bootstrap...))
		}
		if d.kad, err = dht.New(n.host, opts...); err != nil {
			return fmt.Errorf("start DHT: %w", err)
		}
		d.wg.Add(1)
		go d.rendezvous(c)
	}
	if c := cfg.mdns; c != nil {
		service := c.service
		if !strings.HasPrefix(service, "_") {
			service = "_" + service + "._udp"
		}
		d.mdns = mdns.NewMdnsService(n.host, service, mdnsNotifee{d})
		if err := d.mdns.Start(); err != nil {
			d.mdns = nil
			return fmt.Errorf("start mDNS: %w", err)
		}
	}
	n.disc = d
	return nil
}

// stop ends discovery and waits for it. Safe on a nil discovery.
func (d *discovery) stop() {
	if d == nil {
		return
	}
	d.cancel()
	if d.mdns != nil {
		if err := d.mdns.Close(); err != nil {
			log.Debugw("close mDNS", "err", err)
		}
	}
	d.wg.Wait()
	if d.kad != nil {
		if err := d.kad.Close(); err != nil {
			log.Debugw("close DHT", "err", err)
		}
	}
}

type mdnsNotifee struct{ d *discovery }

func (m mdnsNotifee) HandlePeerFound(ai peer.AddrInfo) { m.d.found(ai, SourceMDNS) }

// rendezvous bootstraps the DHT, waits until it is usable, then runs
// rounds that advertise the node under the namespace and look up the others
// (round): the first round at once, the next ones 1 s, 2 s, 4 s … later, up
// to the interval.
//
// A DHT is usable once its routing table holds a peer: before that, every
// advertisement and lookup fails at once ("failed to find any peer in
// table"), and a round spent on that is a round lost. With a schedule that
// starts when the node does, a node that joined the DHT after its first
// round waited for the next, later one: tools/swarm saw first discoveries
// 7–18 s after start with 30 nodes and a 5-s interval, a minute with 200
// and the default interval. So no round runs while the table is empty (it
// is polled: waitUsable), and a round whose advertisement fails is tried
// again after 1 s, doubling up to the interval, without advancing the
// schedule of successful rounds.
func (d *discovery) rendezvous(c *dhtConfig) {
	defer d.wg.Done()
	if err := d.kad.Bootstrap(d.ctx); err != nil {
		log.Debugw("DHT bootstrap", "err", err)
	}
	rd := drouting.NewRoutingDiscovery(d.kad)
	var wait time.Duration // the first round as soon as the DHT is usable
	next := min(firstRoundDelay, c.interval)
	retry := next
	var readvertise time.Time
	for {
		select {
		case <-d.ctx.Done():
			return
		case <-time.After(wait):
		}
		if !d.waitUsable(c.interval) {
			return
		}
		if h := testHookRendezvousRound.Load(); h != nil {
			(*h)(d.n, d.kad.RoutingTable().Size())
		}

		failed := d.round(rd, c, &readvertise)
		if failed {
			wait, retry = retry, min(2*retry, c.interval)
		} else {
			wait, next = next, min(2*next, c.interval)
			retry = min(firstRoundDelay, c.interval)
		}
	}
}

// round advertises the node under the rendezvous if that is due (it is
// again at half the advertisement's TTL) and, at the same time, looks up
// the others. It reports whether the round failed. The lookup does not
// wait for the advertisement: an advertisement is a lookup of the closest
// peers and then a store at each, which took 4–7 s per node in a 30-node
// swarm starting up (tools/swarm), while the lookup of the others took
// under a second.
func (d *discovery) round(rd *drouting.RoutingDiscovery, c *dhtConfig, readvertise *time.Time) (failed bool) {
	type advertisement struct {
		ttl time.Duration
		err error
	}
	var advertised chan advertisement
	if time.Now().After(*readvertise) {
		advertised = make(chan advertisement, 1)
		go func() {
			ctx, cancel := context.WithTimeout(d.ctx, advertiseTimeout)
			defer cancel()
			ttl, err := rd.Advertise(ctx, c.rendezvous)
			advertised <- advertisement{ttl, err}
		}()
	}

	ctx, cancel := context.WithTimeout(d.ctx, findTimeout)
	ch, err := rd.FindPeers(ctx, c.rendezvous)
	if err != nil {
		log.Debugw("DHT find peers", "ns", c.rendezvous, "err", err)
		failed = true
	} else {
		for ai := range ch {
			d.found(ai, SourceDHT)
		}
	}
	cancel()

	if advertised != nil {
		if a := <-advertised; a.err != nil {
			// The table lost its peers, or they did not answer.
			log.Debugw("DHT advertise", "ns", c.rendezvous, "err", a.err)
			failed = true
		} else {
			*readvertise = time.Now().Add(a.ttl / 2)
		}
	}
	return failed
}

// Polling of an empty routing table (waitUsable): first soon, then less
// often.
const (
	usablePollFirst = 50 * time.Millisecond
	usablePollMax   = time.Second
)

// waitUsable waits until the DHT's routing table holds a peer. It reports
// false when discovery stops first.
//
// While the table is empty it asks the DHT to bootstrap again (Bootstrap
// makes it dial its bootstrap peers when its table is empty), 1 s after the
// wait began, then 2 s, 4 s … up to interval: on its own kad-dht tries them
// again only every 2 minutes, so a node whose first dials failed (the
// bootstrap nodes overloaded, or away) stayed without peers for minutes —
// in a 200-node swarm on a loaded machine some nodes discovered nobody in
// their 280 s (tools/swarm).
func (d *discovery) waitUsable(interval time.Duration) bool {
	poll := usablePollFirst
	kick := min(firstRoundDelay, interval)
	nextKick := time.Now().Add(kick)
	for d.kad.RoutingTable().Size() == 0 {
		select {
		case <-d.ctx.Done():
			return false
		case <-time.After(poll):
		}
		poll = min(2*poll, usablePollMax)
		if time.Now().After(nextKick) {
			log.Debugw("DHT routing table empty; bootstrapping again", "after", kick)
			if err := d.kad.Bootstrap(d.ctx); err != nil {
				log.Debugw("DHT bootstrap", "err", err)
			}
			kick = min(2*kick, interval)
			nextKick = time.Now().Add(kick)
		}
	}
	return true
}

// testHookRendezvousRound, if set, is called at the start of each
// rendezvous round with the size of the DHT's routing table.
var testHookRendezvousRound atomic.Pointer[func(n *Node, tableSize int)]

// found records a discovered peer, adds its addresses to the peerstore and
// reports it the first time a source finds it.
func (d *discovery) found(ai peer.AddrInfo, src DiscoverySource) {
	h := d.n.host
	if ai.ID == "" || ai.ID == h.ID() || len(ai.Addrs) == 0 || d.ctx.Err() != nil {
		return
	}
	h.Peerstore().AddAddrs(ai.ID, ai.Addrs, DiscoveredAddrTTL)
	now := d.n.cfg.now()
	d.mu.Lock()
	p, ok := d.peers[ai.ID]
	if !ok {
		p = &DiscoveredPeer{AddrInfo: peer.AddrInfo{ID: ai.ID}, First: now}
		d.peers[ai.ID] = p
	}
	p.Addrs = slices.Clone(ai.Addrs)
	p.Last = now
	isNew := !slices.Contains(p.Sources, src)
	if isNew {
		p.Sources = append(p.Sources, src)
	}
	snap := p.clone()
	d.mu.Unlock()
	if isNew {
		log.Infow("discovered peer", "peer", ai.ID, "via", src, "addrs", ai.Addrs)
		d.n.events.publish(Event{Time: now, Peer: ai.ID, Kind: EventDiscovered, Source: src, Discovered: snap})
	}
}

func (p *DiscoveredPeer) clone() *DiscoveredPeer {
	c := *p
	c.Addrs = slices.Clone(p.Addrs)
	c.Sources = slices.Clone(p.Sources)
	return &c
}

// DiscoveredPeers lists the peers discovery found, in no particular order.
// Empty when discovery is off.
//
// Discovery starts with the node (mDNS often finds a peer before New
// returns), and a peer is reported as an EventDiscovered only to the
// subscriptions that exist when it is found. To miss none, Subscribe first,
// then list: each peer is then listed, or reported, or both.
func (n *Node) DiscoveredPeers() []DiscoveredPeer {
	d := n.disc
	if d == nil {
		return nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]DiscoveredPeer, 0, len(d.peers))
	for _, p := range d.peers {
		out = append(out, *p.clone())
	}
	return out
}

// DHTPeers returns the peers in the DHT's routing table; nil without WithDHT.
func (n *Node) DHTPeers() []peer.ID {
	if n.disc == nil || n.disc.kad == nil {
		return nil
	}
	return n.disc.kad.RoutingTable().ListPeers()
}
