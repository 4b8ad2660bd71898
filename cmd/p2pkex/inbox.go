package main

// The inbox on the command line: the daemon keeps every message it
// receives in DIR/inbox.db (package inbox) before it answers the sender,
// prints one line of metadata (never the text), and serves the messages on
// its control API:
//
//	GET /v0/inbox[?peer=ID][&after=SEQ][&follow=1] -> NDJSON stream of inboxJSON
//
// (with follow, the stream stays open and carries each new message until
// the client leaves or the daemon stops). "p2pkex inbox" reads them there,
// or, when no daemon runs, from inbox.db opened read-only.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/urfave/cli/v3"

	"github.com/p2pkex/p2pkex/inbox"
	"github.com/p2pkex/p2pkex/node"
	"github.com/p2pkex/p2pkex/peerstore"
)

// inboxJSON is one kept message, in the API and in "inbox --json".
type inboxJSON struct {
	Seq   uint64    `json:"seq"`
	From  string    `json:"from"`
	Time  time.Time `json:"time"` // RFC 3339 with the zone
	Epoch uint64    `json:"epoch"`
	KeyID string    `json:"key_id"`
	Size  int       `json:"size"`
	// Text is the message as UTF-8; where it is not valid UTF-8 the bad
	// bytes read U+FFFD and Data holds the exact bytes (base64).
	Text string `json:"text"`
	Data []byte `json:"data,omitempty"`
}

func toInboxJSON(m *inbox.Message) inboxJSON {
	j := inboxJSON{Seq: m.Seq, From: m.From.String(), Time: m.Time, Epoch: m.Epoch,
		KeyID: peerstore.KeyID(m.KeyID).String(), Size: len(m.Data), Text: string(m.Data)}
	if !utf8.Valid(m.Data) {
		j.Text = strings.ToValidUTF8(j.Text, "\uFFFD")
		j.Data = m.Data
	}
	return j
}

func inboxLimits(cfg *config) inbox.Limits {
	return inbox.Limits{MaxCount: cfg.Messages.InboxMax, MaxAge: time.Duration(cfg.Messages.InboxMaxAge)}
}

// daemonInbox is the daemon's open inbox.
type daemonInbox struct {
	ib   *inbox.Inbox
	dir  string
	out  *progress
	hint string // " --repo DIR" when the user named it

	done chan struct{} // closed when the daemon stops: followers leave
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

// stopFollowers ends the followers' streams (before the API server stops).
func (d *daemonInbox) stopFollowers() {
	select {
	case <-d.done:
	default:
		close(d.done)
	}
}

// Close stops pruning and closes the file (after the node closed).
func (d *daemonInbox) Close() error {
	d.stopFollowers()
	d.wg.Wait()
	return d.ib.Close()
}

// handler serves GET /v0/inbox.
func (d *daemonInbox) handler(mux *http.ServeMux) {
	mux.HandleFunc("GET /v0/inbox", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		var from peer.ID
		if s := q.Get("peer"); s != "" {
			p, err := peer.Decode(s)
			if err != nil {
				http.Error(w, fmt.Sprintf("%q is not a peer ID", s), http.StatusBadRequest)
				return
			}
			from = p
		}
		var after uint64
		if s := q.Get("after"); s != "" {
			v, err := strconv.ParseUint(s, 10, 64)
			if err != nil {
				http.Error(w, fmt.Sprintf("after: %q is not a number", s), http.StatusBadRequest)
				return
			}
			after = v
		}
		follow := q.Get("follow") == "1"
		w.Header().Set("Content-Type", "application/x-ndjson")
		f, _ := w.(http.Flusher)
		enc := json.NewEncoder(w)
		for first := true; ; first = false {
			changed := d.ib.Changed() // before List: no message falls between
			msgs, err := d.ib.List(from, after)
			if err != nil {
				if first {
					http.Error(w, err.Error(), http.StatusInternalServerError)
				}
				return
			}
			if first {
				w.WriteHeader(http.StatusOK)
			}
			for i := range msgs {
				if enc.Encode(toInboxJSON(&msgs[i])) != nil {
					return
				}
				after = msgs[i].Seq
			}
			if f != nil {
				f.Flush()
			}
			if !follow {
				return
			}
			select {
			case <-changed:
			case <-r.Context().Done():
				return
			case <-d.done:
				return
			}
		}
	})
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
			var from peer.ID
			if c.Args().Len() == 1 {
				p, err := parsePeerIDArg(c.Args().First()) // api_trust.go
				if err != nil {
					return err
				}
				from = p
			}
			dir := c.String("repo")
			if dir == "" {
				return usagef("no repo: give --repo DIR or set P2PKEX_PATH")
			}
			w := c.Root().Writer
			show := func(m inboxJSON) error {
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
			var err error
			var n int
			if api := dialAPI(dir); api != nil {
				n, err = inboxFromDaemon(ctx, api, from, c.Bool("follow"), show)
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
func inboxFromDaemon(ctx context.Context, api *apiClient, from peer.ID, follow bool, print func(inboxJSON) error) (int, error) {
	q := url.Values{}
	if from != "" {
		q.Set("peer", from.String())
	}
	if follow {
		q.Set("follow", "1")
	}
	path := "/v0/inbox"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	resp, err := api.do(ctx, http.MethodGet, path, nil)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	// A message's JSON: escaping grows text up to six times, and data
	// adds its base64.
	sc.Buffer(nil, 8*node.DefaultMaxMessageSize+4096)
	n := 0
	for sc.Scan() {
		var m inboxJSON
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			return n, fmt.Errorf("daemon sent a line that is not a message: %v", err)
		}
		if err := print(m); err != nil {
			return n, err
		}
		n++
	}
	if ctx.Err() != nil {
		return n, ctx.Err()
	}
	if err := sc.Err(); err != nil && !errors.Is(err, io.EOF) {
		return n, fmt.Errorf("reading the daemon's answer: %v", err)
	}
	if follow {
		// A follower's stream ends only when the daemon stops.
		return n, errors.New("inbox --follow: the daemon stopped")
	}
	return n, nil
}

// inboxFromFile prints the messages of the repo's inbox.db, opened
// read-only (bbolt's shared lock: the daemon, which holds it exclusively,
// is not running).
func inboxFromFile(dir string, from peer.ID, print func(inboxJSON) error) (int, error) {
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
		if err := print(toInboxJSON(&msgs[i])); err != nil {
			return i, err
		}
	}
	return len(msgs), nil
}
