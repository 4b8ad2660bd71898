package main

import (
	"bufio"
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/urfave/cli/v3"

	"github.com/p2pkex/p2pkex/api/server"
	"github.com/p2pkex/p2pkex/client"
	"github.com/p2pkex/p2pkex/node"
)

// Chat on the command line: "p2pkex chat" (through the daemon: POST
// /v0/chat, GET /v0/messages, POST /v0/send), and the daemon's key-change
// warnings.

// printTrustWarnings prints the node's key-change reports prominently,
// until the returned function is called.
func printTrustWarnings(n *node.Node, out *progress) (stop func()) {
	return onEvents(n, func(e node.Event) {
		if e.Kind == node.EventTrustChanged && e.Trust != nil {
			out.printf("%s\n", trustWarning(e.Trust))
		}
	})
}

// onEvents calls f with each of the node's events, in a goroutine of its
// own, until the returned function is called (which waits for f).
func onEvents(n *node.Node, f func(node.Event)) (stop func()) {
	events, stopEvents := n.Subscribe(0)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for e := range events {
			f(e)
		}
	}()
	return func() {
		stopEvents()
		wg.Wait()
	}
}

func trustWarning(tc *node.TrustChange) string {
	return "WARNING: " + server.TrustEvent(*tc).Message
}

func chatCommand() *cli.Command {
	return &cli.Command{
		Name:      "chat",
		Usage:     "chat with a peer in the terminal (through the daemon)",
		ArgsUsage: "PEER",
		Description: `PEER is the peer's peer ID, if the daemon knows an address for it
(connected, discovered, or from "p2pkex connect"), or its full multiaddr
ending in /p2p/<peer ID>. Chat needs the repo's running daemon and a
session key with the peer ("p2pkex exchange" first), and refuses to start
without them, saying how to get them.

Each line read from standard input is sent as one message, sealed under
the session key of the last exchange; messages from the peer are printed
as they arrive (they are also kept in the inbox, "p2pkex inbox"). Ctrl-D
(end of input) ends it; Ctrl-C too, at once, with exit status 130.

Examples:
  p2pkex chat --repo /tmp/alice /ip4/127.0.0.1/tcp/4001/p2p/12D3KooW...
  p2pkex chat --repo /tmp/alice 12D3KooW...`,
		Flags: []cli.Flag{repoFlag(),
			&cli.DurationFlag{Name: "linger", Usage: "after the end of input, keep printing received messages this long"},
		},
		Action: func(ctx context.Context, c *cli.Command) error {
			if c.Args().Len() != 1 {
				return usagef("chat: want one PEER (peer ID or MULTIADDR ending in /p2p/<peer ID>), got %d arguments", c.Args().Len())
			}
			addr := c.Args().First()
			pi, err := server.ParsePeer(addr)
			if err != nil {
				return err
			}
			dir := c.String("repo")
			if err := requireRepo(dir); err != nil { // repo.go
				return err
			}
			if err := notSelf(c, pi.ID); err != nil {
				return err
			}
			d := daemon(dir) // backend.go
			if d == nil {
				return fmt.Errorf("chat needs a running daemon: start one with \"p2pkex daemon%s\"", repoArg(c))
			}
			if err := chatCheck(ctx, c, d, addr, pi.ID); err != nil {
				return err
			}
			ctx, cancel := context.WithCancel(ctx)
			defer cancel()
			msgs, err := d.MessageStream(ctx, pi.ID.String())
			if err != nil {
				return err
			}
			out := &progress{w: c.Root().Writer}
			short := pi.ID.String()
			if len(short) > 12 {
				short = "…" + short[len(short)-6:]
			}
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer msgs.Close()
				for {
					l, err := msgs.Next()
					if err != nil {
						return
					}
					// Quoted: a peer's bytes never reach the terminal raw.
					out.printf("%s> %s\n", short, strings.Trim(fmt.Sprintf("%q", l.Text), `"`))
				}
			}()
			// Standard input is read by a goroutine of its own: a read
			// blocked on a terminal cannot be cancelled, and Ctrl-C must
			// end the chat at once. The goroutine ends with the process.
			lines := make(chan string)
			go func() {
				defer close(lines)
				in := bufio.NewScanner(c.Root().Reader)
				in.Buffer(nil, node.DefaultMaxMessageSize+1)
				for in.Scan() {
					select {
					case lines <- in.Text():
					case <-ctx.Done():
						return
					}
				}
			}()
			out.printf("chat with %s; end with Ctrl-D\n", pi.ID)
			interrupted := func() error {
				cancel()
				wg.Wait()
				return context.Cause(ctx) // context.Canceled: exit 130 (app.go)
			}
		read:
			for {
				select {
				case <-ctx.Done():
					return interrupted()
				case line, ok := <-lines:
					if !ok {
						break read
					}
					if strings.TrimSpace(line) == "" {
						continue
					}
					sctx, scancel := context.WithTimeout(ctx, time.Minute)
					_, err := d.Send(sctx, addr, line)
					scancel()
					if ctx.Err() != nil {
						return interrupted()
					}
					if err != nil {
						out.printf("! not sent: %s\n", oneLine(err))
						continue
					}
				}
			}
			if d := c.Duration("linger"); d > 0 {
				select {
				case <-time.After(d):
				case <-ctx.Done():
					return interrupted()
				}
			}
			cancel()
			wg.Wait()
			return nil
		},
	}
}

// chatCheck asks the daemon whether it can send to PEER, and refuses with
// the way to get what is missing (with the user's --repo).
func chatCheck(ctx context.Context, c *cli.Command, d *client.Client, addr string, p peer.ID) error {
	ready, err := d.Chat(ctx, addr)
	if err != nil {
		return err
	}
	repo := repoArg(c) // trustevents.go
	if !ready.Addr {
		return fmt.Errorf("chat: no address known for %s: give its full multiaddr (\"p2pkex chat%s MULTIADDR\"), or run \"p2pkex connect%s MULTIADDR\" first", p, repo, repo)
	}
	if !ready.Key {
		return fmt.Errorf("chat: no session key with %s: run \"p2pkex exchange%s %s\" first", p, repo, addr)
	}
	return nil
}
