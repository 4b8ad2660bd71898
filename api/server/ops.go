package server

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/p2pkex/p2pkex/api"
	"github.com/p2pkex/p2pkex/node"
	"github.com/p2pkex/p2pkex/peerstore"
	"github.com/p2pkex/p2pkex/protocol"
)

// The operations behind the endpoints, callable in process. Each takes
// and returns the api types and fails with an *api.Error (its Unwrap gives
// the node's own error, for errors.Is and errors.As).

// ID is GET /v0/id.
func (s *Server) ID(context.Context) (*api.ID, error) {
	r := &api.ID{PeerID: s.n.ID().String(), Fingerprint: s.n.Fingerprint().String(), Addrs: []string{}, Running: true}
	for _, a := range s.n.Addrs() {
		r.Addrs = append(r.Addrs, a.String())
	}
	return r, nil
}

// Status is GET /v0/status (the counts start with Start).
func (s *Server) Status(ctx context.Context) (*api.Status, error) {
	id, _ := s.ID(ctx)
	s.mu.Lock()
	reach := s.reach
	s.mu.Unlock()
	st := &api.Status{
		PeerID:          id.PeerID,
		Fingerprint:     id.Fingerprint,
		Addrs:           id.Addrs,
		Started:         s.started.UTC().Truncate(time.Second),
		Uptime:          time.Since(s.started).Truncate(time.Second).String(),
		ConnectedPeers:  len(s.n.Host().Network().Peers()),
		ExchangesDone:   s.done.Load(),
		ExchangesFailed: s.failed.Load(),
		Reachability:    strings.ToLower(strings.TrimPrefix(reach, "Reachability")),
	}
	for _, r := range s.n.RelayReservations() {
		st.Relays = append(st.Relays, r.String())
	}
	if s.opts.Metrics != nil {
		st.Metrics = s.opts.Metrics()
	}
	return st, nil
}

// Rotate is POST /v0/rotate: a new exchange key.
func (s *Server) Rotate(context.Context) (*api.RotateReply, error) {
	before := s.n.Fingerprint()
	if err := s.n.RotateExchangeKey(); err != nil {
		return nil, internal(err)
	}
	return &api.RotateReply{Fingerprint: s.n.Fingerprint().String(), Previous: before.String()}, nil
}

// Exchange is POST /v0/exchange: an exchange with the peer at addr (a full
// multiaddr, or a peer ID the node knows an address for), passing each
// progress line to onProgress (which may be nil) before it returns.
func (s *Server) Exchange(ctx context.Context, addr string, onProgress func(string)) (*api.ExchangeResult, error) {
	pi, err := s.resolve(addr)
	if err != nil {
		return nil, err
	}
	var wg sync.WaitGroup
	if onProgress != nil {
		events, stop := s.n.Subscribe(0)
		defer wg.Wait() // no progress line after the result
		defer stop()
		wg.Add(1)
		go func() {
			defer wg.Done()
			for e := range events {
				if e.Peer != pi.ID {
					continue
				}
				if l := ProgressLine(e, false); l != "" {
					onProgress(l)
				}
			}
		}()
	}
	info, events, err := connectAndExchange(ctx, s.n, pi)
	if err != nil {
		return nil, api.Wrap(api.CodePeer, OneLine(err), err, events)
	}
	return &api.ExchangeResult{Peer: info.Peer.String(), Epoch: info.Epoch, KeyID: info.KeyID.String(),
		Suite: info.Suite.String(), PostQuantum: info.Suite.PostQuantum(),
		SentOwnKey: info.SentOwnKey, ReceivedPeerKey: info.ReceivedPeerKey,
		SafetyNumber: s.n.SafetyNumber(info.Peer).Digits(), TrustEvents: events}, nil
}

// connectAndExchange dials pi and runs one exchange with pi.ID (never with
// another identity: peer.go), with errors a user can act on, and
// returns the exchange's trust events, also when it failed.
func connectAndExchange(ctx context.Context, n *node.Node, pi *peer.AddrInfo) (*node.KeyInfo, []api.TrustEvent, error) {
	if err := reach(ctx, n, pi); err != nil {
		return nil, trustEventsOf(nil, err), err
	}
	info, err := n.Exchange(ctx, pi.ID)
	events := trustEventsOf(info, err)
	if err != nil {
		return nil, events, explainExchangeError(pi.ID, err)
	}
	return info, events, nil
}

// Connect is POST /v0/connect: connect to the peer at addr, a full
// multiaddr.
func (s *Server) Connect(ctx context.Context, addr string) (*api.ConnectReply, error) {
	pi, err := ParsePeerAddr(addr)
	if err != nil {
		return nil, err
	}
	if err := s.notSelf(pi.ID); err != nil {
		return nil, err
	}
	if len(pi.Addrs) == 0 {
		return nil, api.Errorf(api.CodeBadRequest, "multiaddr %q needs an address before /p2p/<peer ID>", addr)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := reach(ctx, s.n, pi); err != nil {
		return nil, api.Wrap(api.CodePeer, OneLine(err), err, trustEventsOf(nil, err))
	}
	rep := &api.ConnectReply{Peer: pi.ID.String()}
	if conns := s.n.Host().Network().ConnsToPeer(pi.ID); len(conns) > 0 {
		rep.Addr = conns[0].RemoteMultiaddr().String()
	}
	if protos, err := s.n.Host().Peerstore().SupportsProtocols(pi.ID, protocol.ID); err == nil && len(protos) > 0 {
		rep.SpeaksP2PKEX = true
	}
	return rep, nil
}

// Send is POST /v0/send: one message to the peer at addr (as Exchange),
// sealed under the session key of the last exchange.
func (s *Server) Send(ctx context.Context, addr, msg string) (*api.SendReply, error) {
	pi, err := s.resolve(addr)
	if err != nil {
		return nil, err
	}
	k, err := s.n.ActiveKey(pi.ID)
	if err != nil {
		return nil, api.Wrap(api.CodeNoSession, fmt.Sprintf("no session key with %s: run \"p2pkex exchange\" first", pi.ID), err, nil)
	}
	clear(k.Key[:])
	if err := reach(ctx, s.n, pi); err != nil {
		return nil, api.Wrap(api.CodePeer, OneLine(err), err, trustEventsOf(nil, err))
	}
	err = s.n.Send(ctx, pi.ID, []byte(msg))
	events := trustEventsOf(nil, err)
	code, line := api.CodePeer, ""
	switch {
	case err == nil:
		return &api.SendReply{Peer: pi.ID.String(), TrustEvents: events}, nil
	case wrongIdentity(pi, err) != nil:
		line = wrongIdentity(pi, err).Error()
	case errors.Is(err, node.ErrNoKey):
		code, line = api.CodeNoSession, fmt.Sprintf("no session key with %s: run \"p2pkex exchange\" first", pi.ID)
	case errors.Is(err, node.ErrNotDelivered):
		line = fmt.Sprintf("%s received the message but nothing there reads messages", pi.ID)
	case errors.Is(err, context.DeadlineExceeded):
		line = fmt.Sprintf("send to %s timed out", pi.ID)
	default:
		line = fmt.Sprintf("send to %s failed: %s", pi.ID, shortDialError(err))
	}
	return nil, api.Wrap(code, OneLine(errors.New(line)), err, events)
}

// Chat is POST /v0/chat: whether the node can send to the peer at addr
// at all (a session key, an address).
func (s *Server) Chat(_ context.Context, addr string) (*api.ChatReady, error) {
	pi, err := ParsePeer(addr)
	if err != nil {
		return nil, err
	}
	if err := s.notSelf(pi.ID); err != nil {
		return nil, err
	}
	_, addrErr := s.resolve(addr)
	rep := &api.ChatReady{Peer: pi.ID.String(), Addr: addrErr == nil}
	if k, err := s.n.ActiveKey(pi.ID); err == nil {
		clear(k.Key[:])
		rep.Key = true
	}
	return rep, nil
}

// ForgetPreview is GET /v0/forget: what Forget would remove of the peer
// (a peer ID, or a multiaddr ending in /p2p/<peer ID>); nothing is.
func (s *Server) ForgetPreview(_ context.Context, who string) (*api.ForgetReply, error) {
	p, err := s.peerID(who, "forget")
	if err != nil {
		return nil, err
	}
	r := &api.ForgetReply{Peer: p.String(), Trust: peerstore.TrustUnknown.String()}
	switch pk, err := s.n.Store().Peer(p); {
	case err == nil:
		r.Record, r.Trust = true, pk.Trust.String()
	case !errors.Is(err, peerstore.ErrNotFound):
		return nil, internal(err)
	}
	switch ss, err := s.n.Store().Sessions(p); {
	case err == nil:
		r.Sessions = len(ss)
		for i := range ss {
			clear(ss[i].Key[:])
		}
	case !errors.Is(err, peerstore.ErrNotFound):
		return nil, internal(err)
	}
	return r, nil
}

// Forget is POST /v0/forget: removes the peer's exchange-key record,
// trust state and session keys, in one store transaction.
func (s *Server) Forget(_ context.Context, who string) (*api.ForgetReply, error) {
	p, err := s.peerID(who, "forget")
	if err != nil {
		return nil, err
	}
	res, err := s.n.Forget(p)
	if err != nil {
		return nil, internal(err)
	}
	return &api.ForgetReply{Peer: p.String(), Record: res.Record, Trust: res.Trust.String(), Sessions: res.Sessions, Removed: true}, nil
}

// Verify is /v0/verify: reads the peer's trust and safety number and, as
// req asks, confirms or revokes its verification.
func (s *Server) Verify(_ context.Context, req api.VerifyRequest) (*api.VerifyReply, error) {
	p, err := s.peerID(req.Peer, "verify")
	if err != nil {
		return nil, err
	}
	n := s.n
	sn := n.SafetyNumber(p)
	r := &api.VerifyReply{Self: n.ID().String(), Peer: p.String(), Digits: sn.Digits(), Words: sn.Words(),
		Trust: peerstore.TrustUnknown.String()}
	pk, err := n.Store().Peer(p)
	switch {
	case errors.Is(err, peerstore.ErrNotFound):
		if req.Changes() {
			return nil, api.Errorf(api.CodeNotFound, "no key of %s known: run \"p2pkex exchange\" first", p)
		}
		r.Previous = r.Trust
		return r, nil
	case err != nil:
		return nil, internal(err)
	}
	r.Known = true
	r.Trust, r.Previous = pk.Trust.String(), pk.Trust.String()
	if fp, err := protocol.ParseFingerprint(pk.Fingerprint); err == nil {
		r.Fingerprint = fp.String()
	}
	switch {
	case req.Revoke:
		if err := n.RevokePeer(p); errors.Is(err, node.ErrNotVerified) {
			return nil, api.Errorf(api.CodeRefused, "%s is not verified (it is %s): nothing to revoke", p, pk.Trust)
		} else if err != nil {
			return nil, internal(err)
		}
		r.Trust, r.Revoked = peerstore.TrustFirstUse.String(), true
	case req.Number != "" || req.Yes:
		number := req.Number
		if req.Yes {
			number = sn.Digits() // the user compared them and says they match
		}
		if err := n.ConfirmPeer(p, number); errors.Is(err, node.ErrSafetyNumberMismatch) {
			return nil, api.Errorf(api.CodeRefused, "the number typed is not the safety number of this repo and %s: %s stays %s; compare again with the peer's owner", p, p, pk.Trust)
		} else if err != nil {
			return nil, internal(err)
		}
		r.Trust, r.Confirmed = peerstore.TrustVerified.String(), true
	}
	return r, nil
}

// ExportKey is POST /v0/export-key: a key for an application from the
// exporter over the session key with the peer (docs/PROTOCOL.md, section
// 11.7). The caller clears the key once used.
func (s *Server) ExportKey(_ context.Context, req api.ExportKeyRequest) (*api.ExportKeyReply, error) {
	p, err := peer.Decode(req.Peer)
	if err != nil {
		return nil, api.Errorf(api.CodeBadRequest, "%q is not a peer ID", req.Peer)
	}
	if p == s.n.ID() {
		return nil, api.Errorf(api.CodeBadRequest, "export-key: %s is this repo's own peer ID", p)
	}
	k, err := s.n.Export(p, req.Label, req.Context, req.Length)
	switch {
	case errors.Is(err, node.ErrNoKey):
		return nil, api.Wrap(api.CodeNoSession, fmt.Sprintf("no session key with %s", p), err, nil)
	case errors.Is(err, protocol.ErrExport):
		return nil, api.Wrap(api.CodeBadRequest, OneLine(err), err, nil)
	case err != nil:
		return nil, internal(err)
	}
	return &api.ExportKeyReply{Peer: p.String(), Epoch: k.Epoch, KeyID: k.KeyID.String(), Key: k.Key}, nil
}

// Keys is GET /v0/keys: the node's exchange keys and the session keys of
// every known peer, or only of who (a peer ID) if not "".
func (s *Server) Keys(_ context.Context, who string) (*api.Keys, error) {
	var only peer.ID
	if who != "" {
		p, err := peer.Decode(who)
		if err != nil {
			return nil, api.Errorf(api.CodeBadRequest, "%q is not a peer ID", who)
		}
		only = p
	}
	return KeysOf(s.n.Store(), only)
}

// Peers is GET /v0/peers: the peers the node is connected to, discovered,
// or holds a record of, sorted by peer ID. It holds the whole list;
// EachPeer does not.
func (s *Server) Peers(ctx context.Context) ([]api.Peer, error) {
	return collectPeers(func(f func(api.Peer) error) error { return s.EachPeer(ctx, f) })
}

// EachPeer calls f with each peer Peers lists, in its order, reading the
// store a page at a time: the daemon answers GET /v0/peers so (writePeers),
// holding one page of known peers, however many it knows. It stops at f's
// first error and returns it.
func (s *Server) EachPeer(_ context.Context, f func(api.Peer) error) error { return eachPeer(s.n, f) }

// notSelf refuses the node's own peer ID.
func (s *Server) notSelf(p peer.ID) error {
	if p == s.n.ID() {
		return api.Errorf(api.CodeBadRequest, "%s is this node's own peer ID", p)
	}
	return nil
}

// peerID parses who (a peer ID or a multiaddr ending in /p2p/<peer ID>)
// for the command cmd, refusing the node's own.
func (s *Server) peerID(who, cmd string) (peer.ID, error) {
	p, err := ParsePeerID(who)
	if err != nil {
		return "", err
	}
	if p == s.n.ID() {
		return "", api.Errorf(api.CodeBadRequest, "%s: %s is this repo's own peer ID", cmd, p)
	}
	return p, nil
}

// resolve is resolvePeer, refusing the node's own peer ID.
func (s *Server) resolve(addr string) (*peer.AddrInfo, error) {
	pi, err := resolvePeer(s.n, addr)
	if err != nil {
		return nil, err
	}
	if err := s.notSelf(pi.ID); err != nil {
		return nil, err
	}
	return pi, nil
}

func internal(err error) *api.Error { return api.Wrap(api.CodeInternal, OneLine(err), err, nil) }
