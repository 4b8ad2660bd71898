package node

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/p2pkex/p2pkex/protocol"
)

// EventKind says what an Event reports.
type EventKind uint8

const (
	// EventStep: a step of an exchange (Step says which).
	EventStep EventKind = iota + 1
	// EventDone: an exchange finished and its key is installed (Info).
	EventDone
	// EventFailed: an exchange failed; nothing was installed (Err).
	EventFailed
	// EventDiscovered: discovery found a peer (Source, Discovered); see
	// discovery.go. Reported once per peer and source; peers found before
	// a subscription began are listed by Node.DiscoveredPeers.
	EventDiscovered
	// EventTrustChanged: a peer's exchange key changed without a rotation
	// that accounts for it (Trust says how, and whether the record was
	// refused); see trust.go.
	EventTrustChanged
)

func (k EventKind) String() string {
	switch k {
	case EventStep:
		return "step"
	case EventDone:
		return "done"
	case EventFailed:
		return "failed"
	case EventDiscovered:
		return "discovered"
	case EventTrustChanged:
		return "trust-changed"
	}
	return "event"
}

// Event is a progress report of an exchange.
type Event struct {
	Time time.Time
	Peer peer.ID
	Kind EventKind
	Step protocol.Event // EventStep: phase entered or left, notice sent or received
	Info *KeyInfo       // EventDone
	Err  error          // EventFailed

	Source     DiscoverySource // EventDiscovered: how the peer was found
	Discovered *DiscoveredPeer // EventDiscovered: the peer and its addresses

	Trust *TrustChange // EventTrustChanged
}

// events fans events out to subscribers. A subscriber that does not keep up
// loses events (counted in Dropped) rather than slowing exchanges down.
type events struct {
	mu      sync.Mutex
	subs    map[chan Event]struct{}
	closed  bool
	dropped atomic.Uint64
	// count is len(subs), for publish to return at once when no one
	// listens (an exchange publishes some twenty steps).
	count atomic.Int32
}

// DefaultSubscriptionBuffer is the buffer of a subscription when Subscribe
// is given 0.
const DefaultSubscriptionBuffer = 1024

// Subscribe returns a channel of the node's events and a function that ends
// the subscription. The channel is closed when the subscription ends or the
// node closes. Events are dropped, not queued, when the buffer is full.
func (n *Node) Subscribe(buffer int) (<-chan Event, func()) {
	if buffer <= 0 {
		buffer = DefaultSubscriptionBuffer
	}
	ch := make(chan Event, buffer)
	e := &n.events
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		close(ch)
		return ch, func() {}
	}
	if e.subs == nil {
		e.subs = map[chan Event]struct{}{}
	}
	e.subs[ch] = struct{}{}
	e.count.Store(int32(len(e.subs)))
	var once sync.Once
	return ch, func() {
		once.Do(func() {
			e.mu.Lock()
			defer e.mu.Unlock()
			if _, ok := e.subs[ch]; ok {
				delete(e.subs, ch)
				e.count.Store(int32(len(e.subs)))
				close(ch)
			}
		})
	}
}

// DroppedEvents returns how many events subscribers lost to full buffers.
func (n *Node) DroppedEvents() uint64 { return n.events.dropped.Load() }

func (e *events) publish(ev Event) {
	if e.count.Load() == 0 {
		return // an event no subscriber could have seen yet
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for ch := range e.subs {
		select {
		case ch <- ev:
		default:
			e.dropped.Add(1)
		}
	}
}

func (e *events) close() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.closed = true
	for ch := range e.subs {
		close(ch)
	}
	e.subs = nil
	e.count.Store(0)
}
