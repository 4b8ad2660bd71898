// Command chat is a small chat program that embeds a p2pkex node: each line
// typed is sent to the peer as one message, sealed under the key the two
// nodes exchanged; the peer's messages are printed as they arrive.
//
// In one terminal:
//
//	go run ./examples/chat
//
// It prints its address. In a second terminal, give that address:
//
//	go run ./examples/chat /ip4/127.0.0.1/tcp/40123/p2p/12D3KooW...
//
// The second one connects and exchanges keys; the first learns its peer from
// that exchange. Both print the safety number: the same on both sides. Both
// listen on 127.0.0.1 only (-listen changes that) and keep nothing on disk.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/p2pkex/p2pkex/node"
)

func main() {
	listen := flag.String("listen", "/ip4/127.0.0.1/tcp/0", "listen `MULTIADDR`")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: chat [-listen MULTIADDR] [PEER-MULTIADDR]\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() > 1 {
		flag.Usage()
		os.Exit(2)
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt)
	defer cancel()
	if err := chat(ctx, *listen, flag.Arg(0), os.Stdin, os.Stdout); err != nil {
		log.SetFlags(0)
		log.Fatalf("chat: %v", err)
	}
}

// chat runs one chat: with the peer at addr, or, if addr is empty, with the
// first peer that exchanges keys with this node.
func chat(ctx context.Context, listen, addr string, in io.Reader, out io.Writer) error {
	n, err := node.New(ctx, node.WithListenAddrs(listen))
	if err != nil {
		return err
	}
	defer n.Close()
	var mu sync.Mutex // one writer at a time
	say := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(out, format, args...)
	}

	inbox, stopInbox := n.Messages(0)
	defer stopInbox()
	events, stopEvents := n.Subscribe(0)
	defer stopEvents()

	var p peer.ID
	if addr != "" {
		m, err := ma.NewMultiaddr(addr)
		if err != nil {
			return err
		}
		pi, err := peer.AddrInfoFromP2pAddr(m)
		if err != nil {
			return err
		}
		if err := n.Connect(ctx, *pi); err != nil {
			return err
		}
		if _, err := n.Exchange(ctx, pi.ID); err != nil {
			return err
		}
		p = pi.ID
	} else {
		for _, a := range n.Addrs() {
			say("waiting for a peer; run: go run ./examples/chat %s\n", a)
		}
	wait:
		for {
			select {
			case e := <-events:
				if e.Kind == node.EventDone {
					p = e.Peer
					break wait
				}
			case <-ctx.Done():
				return nil
			}
		}
	}
	say("chatting with %s\nsafety number %s\n", p, n.SafetyNumber(p))

	go func() {
		for {
			select {
			case m, ok := <-inbox:
				if !ok {
					return
				}
				if m.From == p {
					// Quoted: a peer's bytes never reach the terminal raw.
					say("< %s\n", strconv.Quote(string(m.Data)))
				}
			case e, ok := <-events:
				if !ok {
					return
				}
				if e.Kind == node.EventTrustChanged {
					say("%s\n", e.Trust) // first use, key changes, identity changes
				}
			}
		}
	}()

	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(in)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				return nil
			}
			if line == "" {
				continue
			}
			sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			err := n.Send(sctx, p, []byte(line))
			cancel()
			if err != nil {
				say("! not sent: %v\n", err)
			}
		case <-ctx.Done():
			return nil
		}
	}
}
