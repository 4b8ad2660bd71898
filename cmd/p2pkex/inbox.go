package main

// The inbox on the command line: the daemon keeps every message it
// receives in DIR/inbox.db (package inbox) before it answers the sender,
// prints one line of metadata (never the text), and serves the messages on
// its control API (GET /v0/inbox, api/server; with follow, the stream stays
// open and carries each new message until the client leaves or the daemon
// stops). "p2pkex inbox" reads them there, or, when no daemon runs, from
// inbox.db opened read-only.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/urfave/cli/v3"

	"github.com/p2pkex/p2pkex/api"
	"github.com/p2pkex/p2pkex/api/server"
	"github.com/p2pkex/p2pkex/client"
	"github.com/p2pkex/p2pkex/inbox"
	"github.com/p2pkex/p2pkex/node"
)

func inboxLimits(cfg *config) inbox.Limits {
	return inbox.Limits{MaxCount: cfg.Messages.InboxMax, MaxAge: time.Duration(cfg.Messages.InboxMaxAge)}
}

// daemonInbox is the daemon's open inbox.
type daemonInbox struct {
	ib   *inbox.Inbox
	dir  string
	out  *progress
	hint string // " --repo DIR" when the user named it

	done chan struct{} // closed when the daemon stops: pruning ends
	wg   sync.WaitGroup
}

// openDaemonInbox opens the repo's inbox for the daemon, which holds it
// while it runs, and prunes it by age every minute.
func openDaemonInbox(c *cli.Command, dir string, cfg *config, out *progress) (*daemonInbox, error) {
	path := filepath.Join(dir, inbox.FileName)
	// A reader ("p2pkex inbox" without a daemon) holds it for an instant.
	ib, err := inbox.Open(path, inboxLimits(cfg), inbox.WithLockTimeout(3*time.Second))
	if errors.Is(err, inbox.ErrLocked) {
		return nil, fmt.Errorf("%s is locked by another p2pkex process", path)
	}
	if errors.Is(err, inbox.ErrCorrupt) {
		return nil, fmt.Errorf("%s is not an inbox: move it aside (the daemon then starts a new one)", path)
	}
	if err != nil {
		return nil, err
	}
	d := &daemonInbox{ib: ib, dir: dir, out: out, hint: repoArg(c), done: make(chan struct{})}
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		t := time.NewTicker(time.Minute)
		defer t.Stop()
		for {
			select {
			case <-d.done:
				return
			case <-t.C:
				if err := ib.Prune(); err != nil {
					out.printf("inbox: %s\n", oneLine(err))
				}
			}
		}
	}()
	return d, nil
}

// keep is the node's message keeper: the message is on disk before the
// sender hears "accepted". The daemon's output gets its metadata only.
func (d *daemonInbox) keep(_ context.Context, m node.Message) error {
	_, err := d.ib.Add(inbox.Message{From: m.From, Epoch: m.Epoch, KeyID: m.KeyID, Time: m.Time, Data: m.Data})
	if err != nil {
		d.out.printf("message from %s (%d bytes) refused: %s\n", m.From, len(m.Data), oneLine(err))
		return err
	}
	d.out.printf("message from %s (%d bytes): p2pkex inbox%s\n", m.From, len(m.Data), d.hint)
	return nil
}

// Close stops pruning and closes the file (after the node closed).
func (d *daemonInbox) Close() error {
	close(d.done)
	d.wg.Wait()
	return d.ib.Close()
}

func inboxCommand() *cli.Command {
	return &cli.Command{
		Name:      "inbox",
		Usage:     "show the messages the repo's daemon received",
		ArgsUsage: "[PEER]",
		Description: `The daemon keeps every message it receives in the repo (DIR/inbox.db,
mode 0600), on disk before the sender is told it arrived, and prints only
a line of metadata. This lists them, oldest first, one line each: time
(RFC 3339), sender, text (escaped: control characters never reach the
terminal raw). PEER (a peer ID, or a multiaddr ending in /p2p/<peer ID>)
shows only that peer's.

Kept are the newest messages.inbox_max (config.json; default 1000) not
older than messages.inbox_max_age (default 720h, 30 days); the daemon
drops the others.

While the daemon runs, it answers (--follow then prints each new message
as it arrives, until Ctrl-C); without one, the command reads inbox.db
itself.

--json prints one object per line: seq (the message's number in the
inbox, in order of arrival), from, time (RFC 3339 with the zone), epoch,
key_id, size (bytes), text, and data (base64, only for a message that is
not valid UTF-8; text then has U+FFFD for the bad bytes).

Examples:
  p2pkex inbox --repo /tmp/bob
  p2pkex inbox --repo /tmp/bob --follow 12D3KooW...
  p2pkex inbox --repo /tmp/bob --json`,
		Flags: []cli.Flag{repoFlag(), jsonFlag(),
			&cli.BoolFlag{Name: "follow", Aliases: []string{"f"}, Usage: "then print new messages as they arrive (needs the daemon)"},
		},
		Action: func(ctx context.Context, c *cli.Command) error {
			if c.Args().Len() > 1 {
				return usagef("inbox: want at most one PEER, got %d arguments", c.Args().Len())
			}
			from, err := optionalPeer(c) // peers.go
			if err != nil {
				return err
			}
			dir := c.String("repo")
			if dir == "" {
				return usagef("no repo: give --repo DIR or set P2PKEX_PATH")
			}
			w := c.Root().Writer
			show := func(m api.InboxMessage) error {
				if c.Bool("json") {
					b, err := json.Marshal(m)
					if err != nil {
						return err
					}
					_, err = fmt.Fprintf(w, "%s\n", b)
					return err
				}
				// Quoted: a peer's bytes never reach the terminal raw.
				text := strings.Trim(strconv.Quote(m.Text), `"`)
				_, err := fmt.Fprintf(w, "%s %s: %s\n", m.Time.Local().Format(time.RFC3339), m.From, text)
				return err
			}
			var n int
			if d := daemon(dir); d != nil { // backend.go
				n, err = inboxFromDaemon(ctx, d, from, c.Bool("follow"), show)
			} else {
				if c.Bool("follow") {
					return fmt.Errorf("inbox --follow needs the repo's running daemon: start one with \"p2pkex daemon%s\"", repoArg(c))
				}
				n, err = inboxFromFile(dir, from, show)
			}
			if err != nil {
				if ctx.Err() != nil {
					return ctx.Err() // Ctrl-C: exit 130
				}
				return err
			}
			if n == 0 && !c.Bool("json") {
				fmt.Fprintln(w, "no messages")
			}
			return nil
		},
	}
}

// inboxFromDaemon prints the daemon's messages (and, following, the new
// ones until ctx ends) and returns how many it printed.
func inboxFromDaemon(ctx context.Context, d *client.Client, from peer.ID, follow bool, print func(api.InboxMessage) error) (int, error) {
	defer d.Close()
	q := client.InboxQuery{Follow: follow}
	if from != "" {
		q.Peer = from.String()
	}
	n := 0
	err := d.Inbox(ctx, q, func(m api.InboxMessage) error {
		n++
		return print(m)
	})
	switch {
	case ctx.Err() != nil:
		return n, ctx.Err()
	case err != nil:
		return n, err
	case follow:
		// A follower's stream ends only when the daemon stops.
		return n, errors.New("inbox --follow: the daemon stopped")
	}
	return n, nil
}

// inboxFromFile prints the messages of the repo's inbox.db, opened
// read-only (bbolt's shared lock: the daemon, which holds it exclusively,
// is not running).
func inboxFromFile(dir string, from peer.ID, print func(api.InboxMessage) error) (int, error) {
	// Not a repo (a typo in --repo?): say so rather than "no messages".
	if err := requireRepo(dir); err != nil { // repo.go
		return 0, err
	}
	cfg, err := loadConfig(dir)
	if err != nil {
		return 0, err
	}
	path := filepath.Join(dir, inbox.FileName)
	ib, err := inbox.OpenReadOnly(path, inboxLimits(cfg))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return 0, nil // no daemon ever ran here: nothing received
	case errors.Is(err, inbox.ErrLocked):
		return 0, fmt.Errorf("%s is locked by another p2pkex process (a daemon starting or stopping?): try again", path)
	case errors.Is(err, inbox.ErrCorrupt):
		return 0, fmt.Errorf("%s is not an inbox: move it aside (the daemon then starts a new one)", path)
	case err != nil:
		return 0, err
	}
	defer ib.Close()
	msgs, err := ib.List(from, 0)
	if err != nil {
		return 0, err
	}
	for i := range msgs {
		if err := print(server.InboxMessage(&msgs[i])); err != nil {
			return i, err
		}
	}
	return len(msgs), nil
}
