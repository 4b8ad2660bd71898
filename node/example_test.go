package node_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/p2pkex/p2pkex/node"
	"github.com/p2pkex/p2pkex/peerstore"
	"github.com/p2pkex/p2pkex/protocol"
)

// twoNodes starts Alice and Bob on loopback and runs one exchange, Alice
// initiating: Alice then holds Bob's record (first-use) and a session.
func twoNodes() (alice, bob *node.Node, stop func(), err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if alice, err = node.New(ctx, node.WithListenAddrs("/ip4/127.0.0.1/tcp/0")); err != nil {
		return nil, nil, nil, err
	}
	if bob, err = node.New(ctx, node.WithListenAddrs("/ip4/127.0.0.1/tcp/0")); err != nil {
		alice.Close()
		return nil, nil, nil, err
	}
	stop = func() { alice.Close(); bob.Close() }
	alice.Host().Peerstore().AddAddrs(bob.ID(), bob.Host().Addrs(), time.Hour)
	if _, err = alice.Exchange(ctx, bob.ID()); err != nil {
		stop()
		return nil, nil, nil, err
	}
	// Alice installs the key when Exchange returns; Bob, the responder,
	// a moment later, once her confirmation arrived.
	for {
		if _, err = bob.ActiveKey(alice.ID()); err == nil {
			return alice, bob, stop, nil
		}
		select {
		case <-ctx.Done():
			stop()
			return nil, nil, nil, err
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// Peers lists the peers a node holds a record of, with their trust state
// and active session.
func ExampleNode_Peers() {
	alice, bob, stop, err := twoNodes()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer stop()

	peers, err := alice.Peers()
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, p := range peers {
		fmt.Printf("bob: %v, trust %s, epoch %d, suite %s, record suites %v\n",
			p.ID == bob.ID(), p.Trust, p.Epoch, p.Suite, p.Suites)
	}
	// Output:
	// bob: true, trust first-use, epoch 1, suite MLKEM768X25519, record suites [MLKEM768X25519 DHKEM(X25519)]
}

// ConfirmPeer marks a peer verified once its owner read out the same safety
// number over another channel; a wrong number changes nothing.
func ExampleNode_ConfirmPeer() {
	alice, bob, stop, err := twoNodes()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer stop()

	// Alice's user reads her number to Bob's user, who compares it with
	// his own (bob.SafetyNumber(alice.ID()) is the same) and reads his back;
	// Alice's user types what she heard.
	heard := bob.SafetyNumber(alice.ID()).Digits()

	err = alice.ConfirmPeer(bob.ID(), "12345 67890")
	fmt.Println("wrong number refused:", errors.Is(err, node.ErrSafetyNumberMismatch))
	if err := alice.ConfirmPeer(bob.ID(), heard); err != nil {
		fmt.Println(err)
		return
	}
	info, _ := alice.PeerInfo(bob.ID())
	fmt.Println("trust:", info.Trust)
	// Output:
	// wrong number refused: true
	// trust: verified
}

// RevokePeer withdraws a verification: the peer is first-use again, so
// that the default policy (tofu) accepts its next store reset.
func ExampleNode_RevokePeer() {
	alice, bob, stop, err := twoNodes()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer stop()
	if err := alice.ConfirmPeer(bob.ID(), alice.SafetyNumber(bob.ID()).Digits()); err != nil {
		fmt.Println(err)
		return
	}

	if err := alice.RevokePeer(bob.ID()); err != nil {
		fmt.Println(err)
		return
	}
	info, _ := alice.PeerInfo(bob.ID())
	fmt.Println("trust:", info.Trust)
	fmt.Println("again:", errors.Is(alice.RevokePeer(bob.ID()), node.ErrNotVerified))
	// Output:
	// trust: first-use
	// again: true
}

// Forget removes a peer's record, trust state and session keys, like
// ssh-keygen -R: the way back from a refused record. The next exchange with
// the peer is a first contact.
func ExampleNode_Forget() {
	alice, bob, stop, err := twoNodes()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer stop()

	res, err := alice.Forget(bob.ID())
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("removed: record %v (%s), %d session key(s)\n", res.Record, res.Trust, res.Sessions)
	peers, _ := alice.Peers()
	fmt.Println("peers left:", len(peers))

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	info, err := alice.Exchange(ctx, bob.ID())
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, e := range info.Trust {
		fmt.Println("event:", e.Change, "->", e.State)
	}
	// Output:
	// removed: record true (first-use), 1 session key(s)
	// peers left: 0
	// event: first contact -> first-use
}

// New builds a node with a libp2p host of its own, here on loopback with an
// in-memory store (node.WithStore(peerstore.OpenBolt(dir)) keeps identity,
// exchange keys and session keys across restarts).
func ExampleNew() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n, err := node.New(ctx, node.WithListenAddrs("/ip4/127.0.0.1/tcp/0"))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer n.Close()

	fmt.Println("listening:", len(n.Addrs()) > 0)
	fmt.Println("serves:", slices.Contains(n.Host().Mux().Protocols(), protocol.ID))
	fmt.Println("exchange-key fingerprint (SHA2-256 multihash) bytes:", len(n.Fingerprint()))
	// Output:
	// listening: true
	// serves: true
	// exchange-key fingerprint (SHA2-256 multihash) bytes: 34
}

// WithHost attaches the node to a host the application builds itself. The
// host must have the store's identity: take the key from the store (here a
// new store gets one first, as New would do) and give it to libp2p.New,
// with node.HostOptions for the host New would have built. The application
// closes its host; Close closes only the node.
func ExampleWithHost() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	store := peerstore.NewMemory()
	defer store.Close()
	key, err := store.Identity()
	if errors.Is(err, peerstore.ErrNotFound) {
		if key, _, err = crypto.GenerateEd25519Key(rand.Reader); err == nil {
			err = store.SetIdentity(key)
		}
	}
	if err != nil {
		fmt.Println(err)
		return
	}

	opts, err := node.HostOptions(node.WithListenAddrs("/ip4/127.0.0.1/tcp/0"))
	if err != nil {
		fmt.Println(err)
		return
	}
	h, err := libp2p.New(append(opts, libp2p.Identity(key))...)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer h.Close()

	n, err := node.New(ctx, node.WithHost(h), node.WithStore(store))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer n.Close()
	fmt.Println("node ID is the host's:", n.ID() == h.ID())

	// A host with another key is refused: the store's identity is the node's.
	other, err := libp2p.New(libp2p.NoListenAddrs)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer other.Close()
	_, err = node.New(ctx, node.WithHost(other), node.WithStore(store))
	fmt.Println("other host refused:", err != nil)
	// Output:
	// node ID is the host's: true
	// other host refused: true
}

// Exchange runs the three phases with a peer the host can reach and
// installs the agreed key as the next epoch.
func ExampleNode_Exchange() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	alice, err := node.New(ctx, node.WithListenAddrs("/ip4/127.0.0.1/tcp/0"))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer alice.Close()
	bob, err := node.New(ctx, node.WithListenAddrs("/ip4/127.0.0.1/tcp/0"))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer bob.Close()

	// Alice learns where Bob is (Connect, discovery, or the peerstore).
	if err := alice.Connect(ctx, peer.AddrInfo{ID: bob.ID(), Addrs: bob.Addrs()}); err != nil {
		fmt.Println(err)
		return
	}
	for range 2 {
		info, err := alice.Exchange(ctx, bob.ID())
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Printf("epoch %d, suite %s, sent own key %v, received Bob's %v\n",
			info.Epoch, info.Suite, info.SentOwnKey, info.ReceivedPeerKey)
	}
	// Output:
	// epoch 1, suite MLKEM768X25519, sent own key true, received Bob's true
	// epoch 2, suite MLKEM768X25519, sent own key false, received Bob's false
}

// ExportKey gives an application keys of its own, derived from the session
// key with a label and a context: both peers compute the same key, other
// labels and contexts give independent keys, and the raw session key
// (ActiveKey, which also keys Send's messages) is never needed.
func ExampleNode_ExportKey() {
	alice, bob, stop, err := twoNodes()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer stop()

	const label = "example file key v1"
	ka, err := alice.ExportKey(bob.ID(), label, []byte("file 1"), 32)
	if err != nil {
		fmt.Println(err)
		return
	}
	kb, err := bob.ExportKey(alice.ID(), label, []byte("file 1"), 32)
	if err != nil {
		fmt.Println(err)
		return
	}
	other, _ := alice.ExportKey(bob.ID(), label, []byte("file 2"), 32)
	fmt.Println("same on both sides:", bytes.Equal(ka, kb), len(ka), "bytes")
	fmt.Println("other context, other key:", !bytes.Equal(ka, other))

	// Export says which session a key came from; a new exchange gives new keys.
	k, _ := alice.Export(bob.ID(), label, []byte("file 1"), 32)
	fmt.Println("epoch:", k.Epoch)

	_, err = alice.ExportKey(alice.ID(), label, nil, 32)
	fmt.Println("no session:", errors.Is(err, node.ErrNoKey))
	_, err = alice.ExportKey(bob.ID(), "", nil, 32)
	fmt.Println("empty label:", errors.Is(err, protocol.ErrExport))
	// Output:
	// same on both sides: true 32 bytes
	// other context, other key: true
	// epoch: 1
	// no session: true
	// empty label: true
}

// Send seals a message under the session key and delivers it; the peer
// reads it from Messages.
func ExampleNode_Send() {
	alice, bob, stop, err := twoNodes()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer stop()
	msgs, unsubscribe := bob.Messages(0)
	defer unsubscribe()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := alice.Send(ctx, bob.ID(), []byte("hello, Bob")); err != nil {
		fmt.Println(err)
		return
	}
	m := <-msgs // Send returned: Bob's node has handed it to this subscriber
	fmt.Printf("from Alice: %v, epoch %d: %s\n", m.From == alice.ID(), m.Epoch, m.Data)
	// Output:
	// from Alice: true, epoch 1: hello, Bob
}

// Subscribe reports the progress of exchanges: every step, the result or
// failure, trust events and discoveries.
func ExampleNode_Subscribe() {
	alice, bob, stop, err := twoNodes()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer stop()
	events, unsubscribe := alice.Subscribe(0)
	defer unsubscribe()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := alice.Exchange(ctx, bob.ID()); err != nil {
		fmt.Println(err)
		return
	}
	steps := 0
	for {
		select {
		case e := <-events:
			switch e.Kind {
			case node.EventStep:
				steps++
			case node.EventDone:
				fmt.Printf("done: %s, epoch %d, with Bob: %v, steps reported: %v\n",
					e.Info.Role, e.Info.Epoch, e.Peer == bob.ID(), steps > 0)
				return
			case node.EventFailed:
				fmt.Println("failed:", e.Err)
				return
			}
		case <-ctx.Done():
			fmt.Println("no result")
			return
		}
	}
	// Output:
	// done: initiator, epoch 2, with Bob: true, steps reported: true
}
