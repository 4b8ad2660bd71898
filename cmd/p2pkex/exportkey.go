package main

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/urfave/cli/v3"

	"github.com/p2pkex/p2pkex/api"
	"github.com/p2pkex/p2pkex/api/server"
	"github.com/p2pkex/p2pkex/protocol"
)

// export-key: a key for an application, from the exporter over the session
// key with a peer (docs/PROTOCOL.md, section 11.7; node.Node.ExportKey).
// Through the repo's daemon (POST /v0/export-key) if it runs, else with a
// node of the command's own on the repo.

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
			pi, err := server.ParsePeer(c.Args().First())
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
			req := api.ExportKeyRequest{Peer: pi.ID.String(), Label: label, Context: []byte(c.String("context")), Length: length}
			var rep *api.ExportKeyReply
			err = onBackend(ctx, c, nil, func(b backend) (err error) { // backend.go
				rep, err = b.ExportKey(ctx, req)
				return err
			})
			if ae := (*api.Error)(nil); errors.As(err, &ae) && ae.Code == api.CodeNoSession {
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
