// Package node runs the p2pkex key exchange on a libp2p host.
//
// # Use
//
//	n, err := node.New(ctx, node.WithStore(store))
//	...
//	defer n.Close()
//	info, err := n.Exchange(ctx, peerID)  // runs /p2pkex/1.0.0
//	err = n.Send(ctx, peerID, []byte("hi"))  // an encrypted message
//	key, err := n.ExportKey(peerID, "myapp file key v1", nil, 32)  // a key of the app's own
//
// A node either builds its own libp2p host (identity from the store) or
// attaches to a host the application already runs ([WithHost]). It serves
// the protocol to every peer, keeps its own exchange key and rotates it by
// age or on request ([Node.RotateExchangeKey]), and stores each agreed key as
// a new epoch only after both sides confirmed it.
//
// # Keys for applications
//
// An application that needs keys of its own derives them with
// [Node.ExportKey]: a labelled exporter over the session key, modelled on
// TLS 1.3 exporters (docs/PROTOCOL.md, section 11.7). Each label and
// context gives an independent key that both peers compute alike, and a new
// exchange gives new keys ([Node.Export] says which epoch a key belongs
// to). [Node.ActiveKey] hands out the raw session key, which also keys the
// node's own messages ([Node.Send]): an application that used it, or
// derived keys from it its own way, could reuse a message key or collide
// with another application's keys. It is there for tools, not for apps.
//
// # Concurrency
//
// Exchanges with different peers run concurrently. Two exchanges with the
// same peer never interleave: a second Exchange call joins the one running.
// When two peers start an exchange with each other at the same moment, the
// one with the smaller peer ID keeps its exchange and the other joins it,
// so both callers get the one resulting key.
package node

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	logging "github.com/ipfs/go-log/v2"
	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/p2pkex/p2pkex/peerstore"
	"github.com/p2pkex/p2pkex/protocol"
)

var log = logging.Logger("p2pkex/node")

// debugEnabled reports whether debug logging is on: a log call on the path
// of every exchange is made only then, since its arguments (boxed into
// interfaces) cost allocations even when the line is dropped.
func debugEnabled() bool { return log.LevelEnabled(logging.LevelDebug) }

// ErrClosed is returned by a closed node.
var ErrClosed = errors.New("node is closed")

// Node is a p2pkex node.
type Node struct {
	cfg       *config
	host      host.Host
	ownsHost  bool
	store     peerstore.Store
	ownsStore bool
	identity  crypto.PrivKey

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	xkey    *protocol.ExchangeKey
	slots   map[peer.ID]*slot
	inbound int
	// kept are the streams kept for the next exchange with a peer, and
	// idleInbound counts the peers' streams waiting for theirs (streams.go).
	kept        map[peer.ID]*keptStream
	idleInbound int
	// closing are the outbound streams closeGracefully is ending, by peer.
	closing map[peer.ID]*closingStreams
	perPeer map[peer.ID]int
	closed  bool
	// Admission (admission.go): inbound exchanges of unknown peers, in all
	// and by network origin, and the counts of its decisions.
	unknownInbound int
	perOrigin      map[netip.Prefix]int
	admit          admissionCounters
	// Known peers' connections (knownconns.go).
	notifee     *network.NotifyBundle
	allowlist   *rcmgr.Allowlist // nil unless the node built the resource manager
	allowlisted map[string]struct{}

	events  events
	msg     messaging   // messaging.go
	disc    *discovery  // nil without WithMDNS and WithDHT
	records recordCache // peers' records, parsed (recordcache.go)

	closeOnce sync.Once
	closeErr  error
}

// New builds a node: it opens (or creates) the identity and exchange key in
// the store, builds or attaches to the libp2p host and serves the protocol.
// When it builds its own host, an explicit listen port another process
// already holds fails with an error wrapping ErrPortInUse that names the
// port (ports.go).
func New(ctx context.Context, opts ...Option) (*Node, error) {
	cfg := defaults()
	for _, o := range opts {
		if err := o(cfg); err != nil {
			return nil, err
		}
	}
	if err := cfg.finish(); err != nil {
		return nil, err
	}
	n := &Node{cfg: cfg, slots: map[peer.ID]*slot{}, perPeer: map[peer.ID]int{}, kept: map[peer.ID]*keptStream{},
		closing:   map[peer.ID]*closingStreams{},
		perOrigin: map[netip.Prefix]int{}}
	n.store = cfg.store
	if n.store == nil {
		n.store, n.ownsStore = peerstore.NewMemory(), true
	}
	ok := false
	defer func() {
		if !ok {
			n.release()
		}
	}()

	var err error
	if n.identity, err = loadIdentity(n.store, cfg.host); err != nil {
		return nil, err
	}
	if err := n.loadExchangeKey(); err != nil {
		return nil, err
	}
	if cfg.host != nil {
		n.host = cfg.host
	} else {
		if err := probePorts(listenAddrs(cfg)); err != nil { // ports.go
			return nil, err
		}
		lopts := append([]libp2p.Option{libp2p.Identity(n.identity)}, hostOptions(cfg)...)
		if n.host, err = libp2p.New(lopts...); err != nil {
			return nil, fmt.Errorf("start libp2p host: %w", err)
		}
		n.ownsHost = true
	}
	if err := n.startDiscovery(); err != nil {
		return nil, err
	}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	n.host.SetStreamHandler(protocol.ID, n.handleStream)
	n.host.SetStreamHandler(MessageProtocolID, n.handleMessageStream)
	n.allowlist, n.allowlisted = builtAllowlist(cfg, n.host.Network()), map[string]struct{}{}
	n.watchKnownConns() // knownconns.go
	n.startMetrics()    // metrics.go
	n.wg.Add(1)
	go n.maintain()
	ok = true
	return n, nil
}

// hostOptions are the options of libp2p.New for the node's own host, less
// the identity: the listen addresses, those of WithLibp2pOptions, and after
// them the node's own, each of which leaves alone what an option before it
// chose: libp2p's metrics off unless asked for (metrics.go), the resource
// manager with the exchange's limits (resources.go).
func hostOptions(cfg *config) []libp2p.Option {
	opts := append([]libp2p.Option{libp2p.ListenAddrs(listenAddrs(cfg)...)}, cfg.libp2pOpts...)
	return append(opts, libp2pMetrics(cfg), resourceManager(cfg))
}

// listenAddrs are the addresses the node's own host listens on.
func listenAddrs(cfg *config) []ma.Multiaddr {
	if len(cfg.listen) > 0 {
		return cfg.listen
	}
	var listen []ma.Multiaddr
	for _, a := range DefaultListenAddrs {
		listen = append(listen, ma.StringCast(a))
	}
	return listen
}

// HostOptions returns the options New gives libp2p.New when it builds its
// own host, for the same opts, less the identity (which New takes from the
// store; libp2p.New without one makes a random key). An application that
// builds the host itself, to wrap it, say, and attaches the node to it with
// WithHost, gets the host New would have built. Only the options that
// concern the host count: listen addresses, WithLibp2pOptions, WithMetrics,
// WithInboundLimits, WithNoticeSize, WithMessageStreamLimits and
// WithMaxMessageSize.
func HostOptions(opts ...Option) ([]libp2p.Option, error) {
	cfg := defaults()
	for _, o := range opts {
		if err := o(cfg); err != nil {
			return nil, err
		}
	}
	return hostOptions(cfg), nil
}

// loadIdentity returns the store's identity key, creating it (from the
// host's key when attaching to a host) on first use.
func loadIdentity(store peerstore.Store, h host.Host) (crypto.PrivKey, error) {
	sk, err := store.Identity()
	switch {
	case err == nil:
		if h != nil && !sk.GetPublic().Equals(h.Peerstore().PubKey(h.ID())) {
			id, _ := peer.IDFromPrivateKey(sk)
			return nil, fmt.Errorf("store identity %s differs from the host's %s: build the host with libp2p.Identity of the store's key", id, h.ID())
		}
		return sk, nil
	case !errors.Is(err, peerstore.ErrNotFound):
		return nil, fmt.Errorf("read identity: %w", err)
	}
	if h != nil {
		if sk = h.Peerstore().PrivKey(h.ID()); sk == nil {
			return nil, errors.New("host does not expose its private key")
		}
	} else if sk, _, err = crypto.GenerateEd25519Key(nil); err != nil {
		return nil, err
	}
	if err := store.SetIdentity(sk); err != nil {
		return nil, fmt.Errorf("store identity: %w", err)
	}
	return sk, nil
}

// loadExchangeKey reads the current exchange key from the store, or makes
// the first one, and rotates it if it is too old or lacks a suite.
func (n *Node) loadExchangeKey() error {
	cur, prev, err := n.store.ExchangeKeys()
	if errors.Is(err, peerstore.ErrNotFound) {
		return n.rotate(0)
	}
	if err != nil {
		return fmt.Errorf("read exchange key: %w", err)
	}
	defer wipeStoredKey(cur)
	if prev != nil {
		// A previous key in its grace period, kept by an older version (or
		// by another user of the store): nothing here opens with it
		// (RotateExchangeKey), so it is destroyed now.
		wipeStoredKey(prev)
		if _, err := n.store.PruneExchangeKeys(prev.Retire); err != nil {
			return fmt.Errorf("destroy previous exchange key: %w", err)
		}
	}
	priv := map[protocol.Suite][]byte{}
	for _, k := range cur.Keys {
		priv[protocol.Suite(k.Suite)] = k.Private
	}
	xk, err := protocol.LoadExchangeKey(n.identity, cur.Record, priv)
	if err != nil {
		return fmt.Errorf("load exchange key: %w", err)
	}
	n.xkey = xk
	if n.needsRotation(xk) {
		return n.rotate(xk.Seq)
	}
	return nil
}

func (n *Node) needsRotation(xk *protocol.ExchangeKey) bool {
	if n.cfg.now().Sub(xk.Created) >= n.cfg.rotateAfter {
		return true
	}
	for _, s := range n.cfg.suites {
		if xk.Keys[s] == nil {
			return true
		}
	}
	if n.cfg.requirePQ {
		// The record must not offer peers a classical key (WithRequirePQ).
		for s := range xk.Keys {
			if !s.PostQuantum() {
				return true
			}
		}
	}
	return false
}

// rotate makes and stores a new exchange key with sequence prev+1.
func (n *Node) rotate(prev uint64) error {
	now := n.cfg.now()
	xk, err := protocol.NewExchangeKey(n.identity, n.cfg.suites, prev+1, now, n.cfg.keyLifetime)
	if err != nil {
		return err
	}
	priv, err := xk.PrivateKeys()
	if err != nil {
		return err
	}
	rec := peerstore.ExchangeKey{Seq: xk.Seq, Record: xk.Envelope, Created: now}
	for _, s := range xk.Suites() {
		rec.Keys = append(rec.Keys, peerstore.SuiteKey{Suite: uint16(s), Private: priv[s]})
	}
	defer func() {
		for _, b := range priv {
			clear(b)
		}
	}()
	// No grace period: the old private key is destroyed in the same
	// transaction (RotateExchangeKey says why nothing needs it).
	if err := n.store.RotateExchangeKey(rec, now, 0); err != nil {
		return fmt.Errorf("store exchange key: %w", err)
	}
	n.mu.Lock()
	n.xkey = xk
	n.mu.Unlock()
	log.Infow("exchange key rotated", "seq", xk.Seq, "fingerprint", xk.Fingerprint.String())
	return nil
}

// RotateExchangeKey replaces the node's exchange key with a new one. Peers
// holding the old fingerprint get the new record in their next exchange's
// phase 2; the old private key is destroyed in the store by the rotation
// itself.
//
// There is no grace period, because nothing opens a part with an old key
// from the store: the protocol machine only ever opens with the key it was
// built with (Config.Own; a peer naming an old fingerprint is sent the new
// record in phase 2 and seals to that, docs/PROTOCOL.md section 7.5), and the
// node builds every machine from its current key. An exchange that started
// before the rotation holds the old key in memory (protocol.ExchangeKey)
// until it ends, bounded by the phase timeouts; a restart ends it. Nothing
// reads the previous key back from the store.
func (n *Node) RotateExchangeKey() error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return ErrClosed
	}
	seq := n.xkey.Seq
	n.mu.Unlock()
	return n.rotate(seq)
}

// maintain rotates the exchange key by age (and destroys a previous key
// that another user of the store kept with a grace period).
func (n *Node) maintain() {
	defer n.wg.Done()
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
		}
		if _, err := n.store.PruneExchangeKeys(n.cfg.now()); err != nil {
			log.Warnw("prune exchange keys", "err", err)
		}
		n.mu.Lock()
		xk := n.xkey
		n.mu.Unlock()
		if n.needsRotation(xk) {
			if err := n.rotate(xk.Seq); err != nil {
				log.Errorw("rotate exchange key", "err", err)
			}
		}
	}
}

// ID returns the node's peer ID.
func (n *Node) ID() peer.ID { return n.host.ID() }

// Host returns the libp2p host the node runs on.
func (n *Node) Host() host.Host { return n.host }

// Store returns the node's store.
func (n *Node) Store() peerstore.Store { return n.store }

// Addrs returns the node's full addresses (ending in /p2p/<peer ID>).
func (n *Node) Addrs() []ma.Multiaddr {
	addrs, err := peer.AddrInfoToP2pAddrs(&peer.AddrInfo{ID: n.host.ID(), Addrs: n.host.Addrs()})
	if err != nil {
		return nil
	}
	return addrs
}

// ExchangeKey returns the node's current exchange key (its public record).
func (n *Node) ExchangeKey() *protocol.PeerRecord {
	n.mu.Lock()
	defer n.mu.Unlock()
	r := n.xkey.PeerRecord
	return &r
}

// Fingerprint returns the fingerprint of the node's current exchange-key
// record.
func (n *Node) Fingerprint() protocol.Fingerprint {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.xkey.Fingerprint
}

// Connect connects to a peer by address. If another identity answers at
// an address of pi.ID, Connect fails with an *IdentityChangeError, under
// every trust policy (identity.go).
func (n *Node) Connect(ctx context.Context, pi peer.AddrInfo) error {
	// A dial backoff does not stand (dial.go).
	err := retryForced(ctx, pi.ID, func(ctx context.Context) error { return n.host.Connect(ctx, pi) })
	return n.identityChanged(pi.ID, err)
}

// ActiveKey returns the session key currently in use with p: the one with
// the highest epoch. peerstore.ErrNotFound if there is none.
//
// Applications use ExportKey instead: this is the raw key that also keys
// the node's messages, and a key derived from it outside the exporter may
// equal one of them (the package documentation, "Keys for applications").
func (n *Node) ActiveKey(p peer.ID) (*peerstore.SessionKey, error) {
	return n.store.ActiveSession(p)
}

// Close stops serving the protocol, cancels the exchanges in flight and
// waits for them, then closes the host and store the node built. It is
// idempotent.
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		n.mu.Lock()
		n.closed = true
		n.mu.Unlock()
		n.host.RemoveStreamHandler(protocol.ID)
		n.host.RemoveStreamHandler(MessageProtocolID)
		n.host.Network().StopNotify(n.notifee)
		n.closeKept()
		n.cancel()
		n.wg.Wait()
		n.events.close()
		n.msg.close()
		n.closeErr = n.release()
	})
	return n.closeErr
}

// release closes what the node owns.
func (n *Node) release() error {
	n.disc.stop()
	var errs []error
	if n.ownsHost && n.host != nil {
		// The network first: go-libp2p's host stops its services before
		// it closes its network, and one of them, the observed-address
		// manager, stops reading its subscription to identify's
		// completions without closing it; with the network still open,
		// the completions that kept arriving (peers pushing identify as
		// they closed, say) filled the subscription, blocked identify's
		// Emit for good with the event's lock held, and AutoNAT's Close
		// then waited for that lock: Close never returned
		// (TestCloseWhileIdentifyCompletes; a bootstrap node of
		// tools/swarm). Closed first, the network delivers nothing more;
		// the host's Close closes it again, which does nothing.
		if err := n.host.Network().Close(); err != nil {
			errs = append(errs, fmt.Errorf("close network: %w", err))
		}
		errs = append(errs, n.host.Close())
	}
	if n.ownsStore && n.store != nil {
		errs = append(errs, n.store.Close())
	}
	return errors.Join(errs...)
}

// wipeStoredKey overwrites the private keys the store returned.
func wipeStoredKey(k *peerstore.ExchangeKey) {
	if k == nil {
		return
	}
	for _, sk := range k.Keys {
		clear(sk.Private)
	}
}
