package node_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/p2pkex/p2pkex/node"
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
	return alice, bob, stop, nil
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
