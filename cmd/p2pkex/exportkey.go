package main

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/urfave/cli/v3"

	"github.com/p2pkex/p2pkex/node"
	"github.com/p2pkex/p2pkex/protocol"
)

// export-key: a key for an application, from the exporter over the session
// key with a peer (docs/PROTOCOL.md, section 11.7; node.Node.ExportKey).
// Through the repo's daemon (POST /v0/export-key) if it runs, else with a
// node of the command's own on the repo.

// exportKeyRequest is the body of POST /v0/export-key. Context is base64
// in JSON, as any []byte.
type exportKeyRequest struct {
	Peer    string `json:"peer"`
	Label   string `json:"label"`
	Context []byte `json:"context"`
	Length  int    `json:"length"`
}

// exportKeyReply is the answer of POST /v0/export-key: the key (base64 in
// JSON) and the session it came from. A peer without a session key is
// answered 404, a request outside the exporter's bounds 400, each with an
// apiErrorJSON.
type exportKeyReply struct {
	Peer  string `json:"peer"`
	Epoch uint64 `json:"epoch"`
	KeyID string `json:"key_id"`
	Key   []byte `json:"key"`
}

// exportKeyJSON is "export-key --json"'s output. Its fields are stable:
// peer, label, context (as given), length, epoch, key_id, encoding ("hex"
// or "base64") and key, in that encoding.
type exportKeyJSON struct {
	Peer     string `json:"peer"`
	Label    string `json:"label"`
	Context  string `json:"context"`
	Length   int    `json:"length"`
	Epoch    uint64 `json:"epoch"`
	KeyID    string `json:"key_id"`
	Encoding string `json:"encoding"`
	Key      string `json:"key"`
}

// errNoSession is a peer without a session key, on either path.
var errNoSession = errors.New("no session key")

func exportKeyCommand() *cli.Command {
	return &cli.Command{
		Name:      "export-key",
		Usage:     "derive a key for an application from the session key with a peer",
		ArgsUsage: "PEER",
		Description: `Prints a key derived from the active session key with PEER (a peer ID)
by the exporter of docs/PROTOCOL.md section 11.7, modelled on TLS 1.3
exporters: both peers get the same key for the same label, context and
length, and independent keys for any other. A new exchange gives new keys;
--json says which epoch and key ID a key came from. The session key itself
is never printed: it also keys the node's messages.

--label names the application and the key's purpose (required, at most
239 bytes); --context binds the key to some data (its bytes as given;
default none); --length is in bytes, 1 to 8160 (default 32). The key is
printed in hex (default) or base64. It is a secret: keep it out of shell
history and logs.

Through the repo's daemon if it runs, else with a node of its own on the
repo.

--json prints one object: peer, label, context, length, epoch, key_id,
encoding (hex or base64) and key.

Examples:
  p2pkex export-key --repo /tmp/alice --label "myapp file key v1" 12D3KooW...
  p2pkex export-key --repo /tmp/bob --label "myapp file key v1" 12D3KooW...   (the same key)
  p2pkex export-key --label chat --context room-7 --length 64 --base64 12D3KooW...`,
		Flags: []cli.Flag{repoFlag(), jsonFlag(),
			&cli.StringFlag{Name: "label", Usage: "what the key is for, e.g. \"myapp file key v1\" (required)"},
			&cli.StringFlag{Name: "context", Usage: "data the key is bound to (default none)"},
			&cli.IntFlag{Name: "length", Value: 32, Usage: "key length in bytes, 1 to 8160"},
			&cli.BoolFlag{Name: "hex", Usage: "print the key in hex (the default)"},
			&cli.BoolFlag{Name: "base64", Usage: "print the key in base64 (standard, padded)"},
		},
		Action: func(ctx context.Context, c *cli.Command) error {
			if c.Args().Len() != 1 {
				return usagef("export-key: want one PEER (a peer ID), got %d arguments", c.Args().Len())
			}
			pi, err := parsePeerArg(c.Args().First()) // api_more.go
			if err != nil {
				return err
			}
			label, length := c.String("label"), c.Int("length")
			switch {
			case !c.IsSet("label") || label == "":
				return usagef("export-key: give --label, naming the application and the key's purpose (for example --label \"myapp file key v1\")")
			case len(label) > protocol.MaxExportLabel:
				return usagef("export-key: --label of %d bytes is longer than %d", len(label), protocol.MaxExportLabel)
			case length < 1 || length > protocol.MaxExportLength:
				return usagef("export-key: --length %d outside [1, %d]", length, protocol.MaxExportLength)
			case c.Bool("hex") && c.Bool("base64"):
				return usagef("export-key: --hex and --base64 do not go together")
			}
			if err := notSelf(c, pi.ID); err != nil { // repo.go
				return err
			}
			dir := c.String("repo")
			req := exportKeyRequest{Peer: pi.ID.String(), Label: label, Context: []byte(c.String("context")), Length: length}
			var rep *exportKeyReply
			if api := dialAPI(dir); api != nil {
				rep, err = api.exportKey(ctx, req)
			} else {
				rep, err = exportKeyOwnNode(ctx, c, dir, pi.ID, req)
			}
			if errors.Is(err, errNoSession) {
				return fmt.Errorf("no session key with %s: run \"p2pkex exchange%s %s\" first", pi.ID, repoArg(c), pi.ID)
			}
			if err != nil {
				return err
			}
			defer clear(rep.Key)
			out := exportKeyJSON{Peer: rep.Peer, Label: label, Context: c.String("context"), Length: length,
				Epoch: rep.Epoch, KeyID: rep.KeyID, Encoding: "hex", Key: hex.EncodeToString(rep.Key)}
			if c.Bool("base64") {
				out.Encoding, out.Key = "base64", base64.StdEncoding.EncodeToString(rep.Key)
			}
			w := c.Root().Writer
			if c.Bool("json") {
				return printJSON(w, out)
			}
			_, err = fmt.Fprintln(w, out.Key)
			return err
		},
	}
}

// exportKeyOwnNode exports the key with a node of the command's own on the
// repo, which must exist.
func exportKeyOwnNode(ctx context.Context, c *cli.Command, dir string, p peer.ID, req exportKeyRequest) (*exportKeyReply, error) {
	r, err := openRepo(dir, false) // repo.go
	if err != nil {
		return nil, err
	}
	defer r.Close()
	if p == peerIDOf(r) {
		return nil, usagef("export-key: %s is this repo's own peer ID", p)
	}
	n, err := newRepoNode(ctx, c, r) // nodeconfig.go
	if err != nil {
		return nil, err
	}
	defer n.Close()
	return exportKeyOf(n, p, req)
}

// exportKeyOf runs the exporter of n, on either path.
func exportKeyOf(n *node.Node, p peer.ID, req exportKeyRequest) (*exportKeyReply, error) {
	k, err := n.Export(p, req.Label, req.Context, req.Length)
	if errors.Is(err, node.ErrNoKey) {
		return nil, fmt.Errorf("%w with %s", errNoSession, p)
	}
	if err != nil {
		return nil, err
	}
	return &exportKeyReply{Peer: p.String(), Epoch: k.Epoch, KeyID: k.KeyID.String(), Key: k.Key}, nil
}

// exportKeyAPI serves POST /v0/export-key on the daemon's control API
// (given to serveAPI).
func exportKeyAPI(n *node.Node) func(*http.ServeMux) {
	return func(mux *http.ServeMux) { handleExportKeyAPI(mux, n) }
}

func handleExportKeyAPI(mux *http.ServeMux, n *node.Node) {
	mux.HandleFunc("POST /v0/export-key", func(w http.ResponseWriter, r *http.Request) {
		var req exportKeyRequest
		// A label of at most 239 bytes; the context is bounded here only
		// by the request size (JSON escaping and base64 grow it).
		if !decodeRequest(w, r, 1<<20, &req) {
			return
		}
		p, err := peer.Decode(req.Peer)
		if err != nil {
			writeAPIError(w, http.StatusBadRequest, fmt.Errorf("%q is not a peer ID", req.Peer), nil)
			return
		}
		if p == n.ID() {
			writeAPIError(w, http.StatusBadRequest, usagef("export-key: %s is this repo's own peer ID", p), nil)
			return
		}
		rep, err := exportKeyOf(n, p, req)
		switch {
		case errors.Is(err, errNoSession):
			writeAPIError(w, http.StatusNotFound, err, nil)
		case errors.Is(err, protocol.ErrExport):
			writeAPIError(w, http.StatusBadRequest, err, nil)
		case err != nil:
			writeAPIError(w, http.StatusInternalServerError, err, nil)
		default:
			writeJSON(w, rep)
			clear(rep.Key)
		}
	})
}

// exportKey asks the daemon for a key. A 404 is errNoSession and a 400 a
// usage error, so that both paths give the same words and exit codes.
func (a *apiClient) exportKey(ctx context.Context, req exportKeyRequest) (*exportKeyReply, error) {
	b, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://p2pkex/v0/export-key", strings.NewReader(string(b)))
	if err != nil {
		return nil, err
	}
	resp, err := a.http.Do(hreq)
	if err != nil {
		if ctx.Err() != nil {
			return nil, &lineError{"the daemon did not answer in time", ctx.Err()}
		}
		return nil, errors.New("the daemon's control socket failed")
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("reading the daemon's answer: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		var ae apiErrorJSON
		msg := trimNL(string(body))
		if json.Unmarshal(body, &ae) == nil && ae.Error != "" {
			msg = ae.Error
		}
		switch resp.StatusCode {
		case http.StatusNotFound:
			return nil, errNoSession
		case http.StatusBadRequest:
			return nil, usageError{msg}
		}
		return nil, errors.New(msg)
	}
	var rep exportKeyReply
	if err := json.Unmarshal(body, &rep); err != nil {
		return nil, fmt.Errorf("the daemon's answer: %v", err)
	}
	clear(body)
	return &rep, nil
}
