package peerstore

import (
	"errors"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

// memStore is the in-memory Store. One mutex guards everything; every value
// goes in and comes out as a copy, so callers never share memory with it.
type memStore struct {
	mu       sync.RWMutex
	closed   bool
	identity []byte // crypto.MarshalPrivateKey output
	current  *ExchangeKey
	previous *ExchangeKey
	peers    map[peer.ID]*PeerKey
	sessions map[peer.ID][]SessionKey // per peer, oldest first, at most KeepEpochs
}

// NewMemory returns a Store that keeps everything in memory and forgets it on
// Close. It behaves like the bbolt store in every other respect.
func NewMemory() Store {
	return &memStore{
		peers:    make(map[peer.ID]*PeerKey),
		sessions: make(map[peer.ID][]SessionKey),
	}
}

func (s *memStore) Identity() (crypto.PrivKey, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, ErrClosed
	}
	if s.identity == nil {
		return nil, ErrNotFound
	}
	// Unmarshalling gives the caller a key object of its own.
	return decodeIdentity(s.identity)
}

func (s *memStore) SetIdentity(k crypto.PrivKey) error {
	if k == nil {
		return errors.New("peerstore: nil identity key")
	}
	b, err := crypto.MarshalPrivateKey(k)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		wipe(b)
		return ErrClosed
	}
	if s.identity != nil {
		wipe(b)
		return ErrExists
	}
	s.identity = b
	return nil
}

func (s *memStore) ExchangeKeys() (*ExchangeKey, *ExchangeKey, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, nil, ErrClosed
	}
	if s.current == nil {
		return nil, nil, ErrNotFound
	}
	var prev *ExchangeKey
	if s.previous != nil {
		prev = cloneExchangeKey(s.previous)
	}
	return cloneExchangeKey(s.current), prev, nil
}

func (s *memStore) RotateExchangeKey(next ExchangeKey, now time.Time, grace time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if err := checkRotate(s.current, &next, grace); err != nil {
		return err
	}
	n := cloneExchangeKey(&next)
	n.Retire = time.Time{}
	wipeExchangeKey(s.previous)
	s.previous = nil
	if grace > 0 {
		s.previous = s.current
		if s.previous != nil {
			s.previous.Retire = now.Add(grace).Round(0)
		}
	} else {
		// Without a grace period the current key is destroyed with the
		// rotation, as in the bbolt store.
		wipeExchangeKey(s.current)
	}
	s.current = n
	return nil
}

func (s *memStore) PruneExchangeKeys(now time.Time) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false, ErrClosed
	}
	if s.previous == nil || now.Before(s.previous.Retire) {
		return false, nil
	}
	wipeExchangeKey(s.previous)
	s.previous = nil
	return true, nil
}

func (s *memStore) Peer(p peer.ID) (*PeerKey, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, ErrClosed
	}
	k, ok := s.peers[p]
	if !ok {
		return nil, ErrNotFound
	}
	return clonePeerKey(k), nil
}

func (s *memStore) Lookup(p peer.ID) (PeerState, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return PeerState{}, ErrClosed
	}
	var st PeerState
	k, ok := s.peers[p]
	if ok {
		st = stateOf(k)
	}
	sess := s.sessions[p]
	if n := len(sess); n > 0 {
		st.Epoch = sess[n-1].Epoch
	} else if !ok {
		return PeerState{}, ErrNotFound
	}
	return st, nil
}

func (s *memStore) Peers() ([]PeerKey, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, ErrClosed
	}
	out := make([]PeerKey, 0, len(s.peers))
	for _, k := range s.peers {
		out = append(out, *clonePeerKey(k))
	}
	slices.SortFunc(out, func(a, b PeerKey) int { return strings.Compare(string(a.Peer), string(b.Peer)) })
	return out, nil
}

// ListPeers keeps the limit lowest IDs after after as it scans the two
// maps (a sorted slice, each ID inserted by binary search), rather than
// sorting every peer for each page.
func (s *memStore) ListPeers(after peer.ID, limit int) ([]PeerSummary, error) {
	if err := checkListLimit(limit); err != nil {
		return nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, ErrClosed
	}
	ids := make([]peer.ID, 0, min(limit, len(s.peers)+len(s.sessions))+1)
	consider := func(p peer.ID) {
		if p <= after || (len(ids) == limit && p >= ids[limit-1]) {
			return
		}
		i, found := slices.BinarySearch(ids, p)
		if found {
			return // in both maps
		}
		ids = slices.Insert(ids, i, p)
		if len(ids) > limit {
			ids = ids[:limit]
		}
	}
	for p := range s.peers {
		consider(p)
	}
	for p := range s.sessions {
		consider(p)
	}
	out := make([]PeerSummary, 0, len(ids))
	for _, p := range ids {
		sum := PeerSummary{Peer: p}
		if k, ok := s.peers[p]; ok {
			sum.State = stateOf(k)
		}
		if sess := s.sessions[p]; len(sess) > 0 {
			act := &sess[len(sess)-1]
			sum.State.Epoch, sum.KeyID, sum.Suite, sum.Created = act.Epoch, act.ID, act.Suite, act.Created
		}
		out = append(out, sum)
	}
	return out, nil
}

func (s *memStore) SetTrust(p peer.ID, t TrustState) error {
	if err := checkTrust(t); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	k, ok := s.peers[p]
	if !ok {
		return ErrNotFound
	}
	k.Trust = t
	return nil
}

func (s *memStore) CommitExchange(c Commit) error {
	defer clear(c.Session.Key[:]) // c is our copy; the store holds its own
	if err := checkCommit(&c); err != nil {
		return err
	}
	p := c.Session.Peer
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	sess := s.sessions[p]
	if n := len(sess); c.Session.Epoch == 0 || (n > 0 && c.Session.Epoch <= sess[n-1].Epoch) {
		return ErrStaleEpoch
	}
	if rec := newPeerRecord(s.peers[p], &c); rec != nil {
		s.peers[p] = rec
	}
	sess = append(sess, *cloneSession(&c.Session))
	if drop := len(sess) - KeepEpochs; drop > 0 {
		wipeSessions(sess[:drop])
		sess = slices.Delete(sess, 0, drop)
		// slices.Delete zeroes the vacated tail, so no key stays behind.
	}
	s.sessions[p] = sess
	return nil
}

// wipeSessions overwrites the keys of sessions being dropped. Every path
// that drops a session key (pruning an epoch, forgetting a peer, Close)
// goes through it.
func wipeSessions(sess []SessionKey) {
	for i := range sess {
		clear(sess[i].Key[:])
	}
}

// deletePeerSessions drops every session of p and overwrites the keys; it
// returns how many there were. A "forget this peer" must use it.
func (s *memStore) deletePeerSessions(p peer.ID) int {
	sess := s.sessions[p]
	wipeSessions(sess)
	delete(s.sessions, p)
	return len(sess)
}

func (s *memStore) ActiveSession(p peer.ID) (*SessionKey, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, ErrClosed
	}
	sess := s.sessions[p]
	if len(sess) == 0 {
		return nil, ErrNotFound
	}
	return cloneSession(&sess[len(sess)-1]), nil
}

func (s *memStore) Session(p peer.ID, epoch uint64) (*SessionKey, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, ErrClosed
	}
	for i := range s.sessions[p] {
		if sk := &s.sessions[p][i]; sk.Epoch == epoch {
			return cloneSession(sk), nil
		}
	}
	return nil, ErrNotFound
}

func (s *memStore) Sessions(p peer.ID) ([]SessionKey, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, ErrClosed
	}
	sess := s.sessions[p]
	if len(sess) == 0 {
		return nil, ErrNotFound
	}
	return slices.Clone(sess), nil
}

func (s *memStore) Forget(p peer.ID) (ForgetResult, error) {
	if err := checkPeerID(p); err != nil {
		return ForgetResult{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ForgetResult{}, ErrClosed
	}
	var res ForgetResult
	if k, ok := s.peers[p]; ok {
		res.Record, res.Trust = true, k.Trust
		delete(s.peers, p)
	}
	res.Sessions = s.deletePeerSessions(p)
	return res, nil
}

// Close forgets everything, overwriting the keys it held.
func (s *memStore) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	wipe(s.identity)
	wipeExchangeKey(s.current)
	wipeExchangeKey(s.previous)
	for _, sess := range s.sessions {
		wipeSessions(sess)
	}
	s.identity, s.current, s.previous, s.peers, s.sessions = nil, nil, nil, nil, nil
	return nil
}
