package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/p2pkex/p2pkex/node"
	"github.com/p2pkex/p2pkex/peerstore"
	"github.com/p2pkex/p2pkex/protocol"
)

// More of the daemon's control API (see api.go):
//
//	GET  /v0/status          -> statusReply
//	GET  /v0/peers           -> []peerJSON
//	POST /v0/connect         {"addr": MULTIADDR} -> connectReply
//	GET  /v0/keys[?peer=ID]  -> keysReply (metadata only, never a key)
//
// and the file DIR/api, written while the daemon runs: the absolute path of
// its control socket, for tools that look for a running daemon the way
// kubo's users look for ~/.ipfs/api.
const apiFile = "api"

type statusReply struct {
	PeerID          string    `json:"peer_id"`
	Fingerprint     string    `json:"fingerprint"`
	Addrs           []string  `json:"addrs"`
	Started         time.Time `json:"started"`
	Uptime          string    `json:"uptime"`
	ConnectedPeers  int       `json:"connected_peers"`
	ExchangesDone   uint64    `json:"exchanges_done"`
	ExchangesFailed uint64    `json:"exchanges_failed"`
	Reachability    string    `json:"reachability"`
	// Relays: the relays holding a reservation for this node.
	Relays  []string `json:"relays,omitempty"`
	Metrics string   `json:"metrics,omitempty"`
}

type peerJSON struct {
	Peer      string `json:"peer"`
	Connected bool   `json:"connected"`
	// Connection: "direct" or "relayed" (only limited, relayed
	// connections) when connected.
	Connection string   `json:"connection,omitempty"`
	Addrs      []string `json:"addrs"`
	Discovered []string `json:"discovered"`
	Known      bool     `json:"known"`
	Trust      string   `json:"trust"`
	// The last exchange: the active epoch and when it was installed.
	Epoch        uint64     `json:"epoch,omitempty"`
	KeyID        string     `json:"key_id,omitempty"`
	Suite        string     `json:"suite,omitempty"`
	LastExchange *time.Time `json:"last_exchange,omitempty"`
}

type connectRequest struct {
	Addr string `json:"addr"`
}

type connectReply struct {
	Peer         string `json:"peer"`
	Addr         string `json:"addr"`
	SpeaksP2PKEX bool   `json:"p2pkex"` // the peer speaks /p2pkex/1.0.0 (as far as identify told)
	// TrustEvents: the connection's trust events (trustevents.go).
	TrustEvents []trustEvent `json:"trust_events,omitempty"`
}

type keysReply struct {
	Own      ownKeyJSON   `json:"own"`
	Previous *ownKeyJSON  `json:"previous,omitempty"`
	Peers    []peerKeyset `json:"peers"`
}

type ownKeyJSON struct {
	Seq         uint64     `json:"seq"`
	Fingerprint string     `json:"fingerprint"`
	Created     time.Time  `json:"created"`
	Retire      *time.Time `json:"destroyed_after,omitempty"`
}

type peerKeyset struct {
	Peer        string        `json:"peer"`
	Trust       string        `json:"trust"`
	Fingerprint string        `json:"fingerprint,omitempty"`
	Sessions    []sessionJSON `json:"sessions"`
}

type sessionJSON struct {
	Epoch   uint64    `json:"epoch"`
	KeyID   string    `json:"key_id"`
	Suite   string    `json:"suite"`
	Created time.Time `json:"created"`
}

// serveMoreAPI registers the endpoints above on mux, starts counting the
// node's exchanges and watching its reachability, and writes DIR/api. stop
// undoes all of it.
func serveMoreAPI(mux *http.ServeMux, n *node.Node, dir, sock string) (stop func(), err error) {
	st := &daemonState{n: n, started: time.Now(), reach: network.ReachabilityUnknown.String()}
	abs, err := filepath.Abs(sock)
	if err != nil {
		return nil, err
	}
	apiPath := filepath.Join(dir, apiFile)
	if err := writeFileAtomic(apiPath, []byte(abs+"\n"), 0o600); err != nil {
		return nil, err
	}
	events, stopEvents := n.Subscribe(0)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for e := range events {
			switch e.Kind {
			case node.EventDone:
				st.done.Add(1)
			case node.EventFailed:
				st.failed.Add(1)
			}
		}
	}()
	sub, err := n.Host().EventBus().Subscribe(new(event.EvtLocalReachabilityChanged))
	if err == nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for e := range sub.Out() {
				if ev, ok := e.(event.EvtLocalReachabilityChanged); ok {
					st.mu.Lock()
					st.reach = ev.Reachability.String()
					st.mu.Unlock()
				}
			}
		}()
	}

	mux.HandleFunc("GET /v0/status", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, st.status()) })
	mux.HandleFunc("GET /v0/peers", func(w http.ResponseWriter, r *http.Request) {
		peers, err := peersOf(n)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		writeJSON(w, peers)
	})
	mux.HandleFunc("POST /v0/connect", func(w http.ResponseWriter, r *http.Request) {
		var req connectRequest
		if !decodeRequest(w, r, 4096, &req) {
			return
		}
		pi, ok := requestPeer(w, n, req.Addr)
		if !ok {
			return
		}
		if len(pi.Addrs) == 0 {
			http.Error(w, fmt.Sprintf("multiaddr %q needs an address before /p2p/<peer ID>", req.Addr), http.StatusBadRequest)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
		defer cancel()
		var rep connectReply
		err := reach(ctx, n, pi)                  // identity.go
		rep.TrustEvents = trustEventsOf(nil, err) // trustevents.go
		if err != nil {
			writeAPIError(w, http.StatusBadGateway, err, rep.TrustEvents)
			return
		}
		p := pi.ID
		rep.Peer = p.String()
		if conns := n.Host().Network().ConnsToPeer(p); len(conns) > 0 {
			rep.Addr = conns[0].RemoteMultiaddr().String()
		}
		if protos, err := n.Host().Peerstore().SupportsProtocols(p, protocol.ID); err == nil && len(protos) > 0 {
			rep.SpeaksP2PKEX = true
		}
		writeJSON(w, rep)
	})
	mux.HandleFunc("GET /v0/keys", func(w http.ResponseWriter, r *http.Request) {
		var only peer.ID
		if s := r.URL.Query().Get("peer"); s != "" {
			p, err := peer.Decode(s)
			if err != nil {
				http.Error(w, fmt.Sprintf("%q is not a peer ID", s), http.StatusBadRequest)
				return
			}
			only = p
		}
		rep, err := keysOf(n.Store(), only)
		if err != nil {
			code := http.StatusInternalServerError
			if errors.Is(err, peerstore.ErrNotFound) {
				code = http.StatusNotFound
			}
			http.Error(w, err.Error(), code)
			return
		}
		writeJSON(w, rep)
	})
	return func() {
		stopEvents()
		if sub != nil {
			sub.Close()
		}
		wg.Wait()
		_ = os.Remove(apiPath)
	}, nil
}

// daemonState is what status reports beyond the node's own accessors.
type daemonState struct {
	n            *node.Node
	started      time.Time
	done, failed atomic.Uint64
	mu           sync.Mutex
	reach        string
}

func (s *daemonState) status() statusReply {
	id := idOf(s.n)
	s.mu.Lock()
	reach := s.reach
	s.mu.Unlock()
	return statusReply{
		PeerID:          id.PeerID,
		Fingerprint:     id.Fingerprint,
		Addrs:           id.Addrs,
		Started:         s.started.UTC().Truncate(time.Second),
		Uptime:          time.Since(s.started).Truncate(time.Second).String(),
		ConnectedPeers:  len(s.n.Host().Network().Peers()),
		ExchangesDone:   s.done.Load(),
		ExchangesFailed: s.failed.Load(),
		Reachability:    strings.ToLower(strings.TrimPrefix(reach, "Reachability")),
		Relays:          relaysOf(s.n),
		Metrics:         metricsURL(),
	}
}

func relaysOf(n *node.Node) []string {
	var out []string
	for _, r := range n.RelayReservations() {
		out = append(out, r.String())
	}
	return out
}

// peersOf lists the peers the node is connected to, discovered, or holds a
// record of, sorted by peer ID.
func peersOf(n *node.Node) ([]peerJSON, error) {
	byID := map[peer.ID]*peerJSON{}
	get := func(p peer.ID) *peerJSON {
		if pj := byID[p]; pj != nil {
			return pj
		}
		pj := &peerJSON{Peer: p.String(), Addrs: []string{}, Discovered: []string{}, Trust: peerstore.TrustUnknown.String()}
		byID[p] = pj
		return pj
	}
	for _, p := range n.Host().Network().Peers() {
		pj := get(p)
		pj.Connected = true
		pj.Connection = n.Connection(p).String()
		for _, c := range n.Host().Network().ConnsToPeer(p) {
			pj.Addrs = append(pj.Addrs, c.RemoteMultiaddr().String())
		}
	}
	for _, d := range n.DiscoveredPeers() {
		pj := get(d.ID)
		for _, src := range d.Sources {
			pj.Discovered = append(pj.Discovered, src.String())
		}
		if !pj.Connected {
			for _, a := range d.Addrs {
				pj.Addrs = append(pj.Addrs, a.String())
			}
		}
	}
	known, err := n.Store().Peers()
	if err != nil {
		return nil, fmt.Errorf("read known peers: %w", err)
	}
	for _, k := range known {
		pj := get(k.Peer)
		pj.Known = true
		pj.Trust = k.Trust.String()
		if act, err := n.Store().ActiveSession(k.Peer); err == nil {
			pj.Epoch, pj.KeyID, pj.Suite = act.Epoch, act.ID.String(), protocol.Suite(act.Suite).String()
			t := act.Created.UTC()
			pj.LastExchange = &t
			clear(act.Key[:])
		}
	}
	out := make([]peerJSON, 0, len(byID))
	for _, pj := range byID {
		out = append(out, *pj)
	}
	slices.SortFunc(out, func(a, b peerJSON) int { return strings.Compare(a.Peer, b.Peer) })
	return out, nil
}

// keysOf describes the node's own exchange keys and the session keys of
// every known peer (or only of one): epochs, key IDs, creation times. It
// zeroes every key it reads.
func keysOf(store peerstore.Store, only peer.ID) (*keysReply, error) {
	cur, prev, err := store.ExchangeKeys()
	if err != nil {
		return nil, fmt.Errorf("read own exchange keys: %w", err)
	}
	wipeOwn := func(k *peerstore.ExchangeKey) {
		if k != nil {
			for _, sk := range k.Keys {
				clear(sk.Private)
			}
		}
	}
	wipeOwn(cur)
	wipeOwn(prev)
	rep := &keysReply{Own: ownKeyJSON{Seq: cur.Seq, Fingerprint: protocol.FingerprintOf(cur.Record).String(), Created: cur.Created.UTC()}, Peers: []peerKeyset{}}
	if prev != nil {
		t := prev.Retire.UTC()
		rep.Previous = &ownKeyJSON{Seq: prev.Seq, Fingerprint: protocol.FingerprintOf(prev.Record).String(), Created: prev.Created.UTC(), Retire: &t}
	}
	var peers []peerstore.PeerKey
	if only != "" {
		pk, err := store.Peer(only)
		if errors.Is(err, peerstore.ErrNotFound) {
			return nil, &lineError{fmt.Sprintf("no keys with %s: no exchange with it yet", only), err} // app.go
		}
		if err != nil {
			return nil, err
		}
		peers = []peerstore.PeerKey{*pk}
	} else if peers, err = store.Peers(); err != nil {
		return nil, fmt.Errorf("read known peers: %w", err)
	}
	for _, pk := range peers {
		ks := peerKeyset{Peer: pk.Peer.String(), Trust: pk.Trust.String(), Sessions: []sessionJSON{}}
		if len(pk.Record) > 0 {
			ks.Fingerprint = protocol.FingerprintOf(pk.Record).String()
		}
		sessions, err := store.Sessions(pk.Peer)
		if err != nil && !errors.Is(err, peerstore.ErrNotFound) {
			return nil, fmt.Errorf("read sessions of %s: %w", pk.Peer, err)
		}
		for i := range sessions {
			s := &sessions[i]
			clear(s.Key[:])
			ks.Sessions = append(ks.Sessions, sessionJSON{Epoch: s.Epoch, KeyID: s.ID.String(),
				Suite: protocol.Suite(s.Suite).String(), Created: s.Created.UTC()})
		}
		rep.Peers = append(rep.Peers, ks)
	}
	return rep, nil
}

// resolvePeer turns a command's PEER into an address: a full multiaddr, or
// a peer ID the node can reach (connected, discovered, or with addresses
// in its libp2p peerstore).
func resolvePeer(n *node.Node, s string) (*peer.AddrInfo, error) {
	pi, err := parsePeerArg(s)
	if err != nil {
		return nil, err
	}
	if len(pi.Addrs) == 0 && pi.ID != n.ID() &&
		n.Host().Network().Connectedness(pi.ID) != network.Connected &&
		len(n.Host().Peerstore().Addrs(pi.ID)) == 0 {
		return nil, fmt.Errorf("no address known for %s: give its full multiaddr, or \"p2pkex connect\" to it first", pi.ID)
	}
	return pi, nil
}

// parsePeerArg parses a peer given as a full multiaddr (ending in
// /p2p/<peer ID>) or as a bare peer ID.
func parsePeerArg(s string) (*peer.AddrInfo, error) {
	if strings.HasPrefix(s, "/") {
		return parsePeerAddr(s)
	}
	p, err := peer.Decode(s)
	if err != nil {
		return nil, usagef("%q is neither a peer ID nor a multiaddr ending in /p2p/<peer ID>", s)
	}
	return &peer.AddrInfo{ID: p}, nil
}

// The daemon's metrics endpoint (--metrics-addr): the default Prometheus
// registry, where libp2p and the node record.
var metricsAt atomic.Pointer[string]

// metricsURL is the URL the daemon serves metrics at, or "".
func metricsURL() string {
	if p := metricsAt.Load(); p != nil {
		return *p
	}
	return ""
}

// checkMetricsAddr rejects a --metrics-addr that is not HOST:PORT.
func checkMetricsAddr(addr string) error {
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return usagef("--metrics-addr %q: want HOST:PORT, such as 127.0.0.1:9464", addr)
	}
	return nil
}

// serveMetrics serves /metrics on addr (HOST:PORT; port 0 picks one).
func serveMetrics(addr string) (stop func(), err error) {
	if err := checkMetricsAddr(addr); err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--metrics-addr: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.Handler())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(l)
	}()
	u := "http://" + l.Addr().String() + "/metrics"
	metricsAt.Store(&u)
	return func() {
		metricsAt.Store(nil)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		<-done
	}, nil
}
