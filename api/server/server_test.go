package server_test

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/p2pkex/p2pkex/api"
	"github.com/p2pkex/p2pkex/api/server"
	"github.com/p2pkex/p2pkex/client"
	"github.com/p2pkex/p2pkex/node"
)

// ops is what both *server.Server and *client.Client offer.
type ops interface {
	Exchange(context.Context, string, func(string)) (*api.ExchangeResult, error)
	Send(context.Context, string, string) (*api.SendReply, error)
	Keys(context.Context, string) (*api.Keys, error)
	ForgetPreview(context.Context, string) (*api.ForgetReply, error)
	Verify(context.Context, api.VerifyRequest) (*api.VerifyReply, error)
	ExportKey(context.Context, api.ExportKeyRequest) (*api.ExportKeyReply, error)
}

// serveNode serves n's API on a socket in a temporary directory and
// returns the server and a client of it.
func serveNode(t *testing.T, n *node.Node) (*server.Server, *client.Client) {
	t.Helper()
	dir := t.TempDir()
	srv := server.New(n, server.Options{Dir: dir})
	require.NoError(t, srv.Start())
	t.Cleanup(func() { require.NoError(t, srv.Close()) })
	c, err := client.New(dir)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, c.Close()) })
	return srv, c
}

// TestSameErrorsInProcess: an operation called in process (the command
// line without a daemon) fails with the same code and words as through
// the socket (with a daemon), so that both paths print the same line.
func TestSameErrorsInProcess(t *testing.T) {
	ctx := context.Background()
	n, err := node.New(ctx, node.WithListenAddrs("/ip4/127.0.0.1/tcp/0"))
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, n.Close()) })
	srv, c := serveNode(t, n)

	self := n.ID().String()
	const other = "12D3KooWJxTv3PXeD23apMf6McRS3wjsuMsnaZ1X7ufxB54PrL2v"
	for _, tc := range []struct {
		name string
		op   func(ops) error
		code string
	}{
		{"exchange nonsense", func(b ops) error { _, err := b.Exchange(ctx, "nonsense", nil); return err }, api.CodeBadRequest},
		{"exchange no address", func(b ops) error { _, err := b.Exchange(ctx, other, nil); return err }, api.CodeNotFound},
		{"exchange self", func(b ops) error { _, err := b.Exchange(ctx, self, nil); return err }, api.CodeBadRequest},
		{"exchange bad multiaddr", func(b ops) error { _, err := b.Exchange(ctx, "/ip4/1.2.3", nil); return err }, api.CodeBadRequest},
		{"send self", func(b ops) error { _, err := b.Send(ctx, self, "x"); return err }, api.CodeBadRequest},
		{"keys unknown", func(b ops) error { _, err := b.Keys(ctx, other); return err }, api.CodeNotFound},
		{"keys nonsense", func(b ops) error { _, err := b.Keys(ctx, "nonsense"); return err }, api.CodeBadRequest},
		{"forget self", func(b ops) error { _, err := b.ForgetPreview(ctx, self); return err }, api.CodeBadRequest},
		{"verify unknown", func(b ops) error {
			_, err := b.Verify(ctx, api.VerifyRequest{Peer: other, Yes: true})
			return err
		}, api.CodeNotFound},
		{"export-key no session", func(b ops) error {
			_, err := b.ExportKey(ctx, api.ExportKeyRequest{Peer: other, Label: "x", Length: 32})
			return err
		}, api.CodeNoSession},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var local, remote *api.Error
			require.True(t, errors.As(tc.op(srv), &local), "in process: not an *api.Error")
			require.True(t, errors.As(tc.op(c), &remote), "through the socket: not an *api.Error")
			require.Equal(t, tc.code, local.Code)
			require.Equal(t, local.Code, remote.Code)
			require.Equal(t, server.OneLine(local), remote.Message)
			require.NotEmpty(t, remote.Message)
		})
	}
}
