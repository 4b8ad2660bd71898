package main

// The two paths of a command: through the repo's running daemon (package
// client, over its control socket), or, when none runs, on the repo itself
// (a node of the command's own, served in process by package api/server).
// Both answer with the same api types and the same *api.Error, so the
// user reads the same words and gets the same exit code on either path.

import (
	"context"
	"errors"
	"fmt"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/urfave/cli/v3"

	"github.com/p2pkex/p2pkex/api"
	"github.com/p2pkex/p2pkex/api/server"
	"github.com/p2pkex/p2pkex/client"
)

// backend is what a command asks of the repo's node: *client.Client (the
// daemon) and *server.Server (a node of the command's own) both are.
type backend interface {
	Exchange(ctx context.Context, addr string, onProgress func(string)) (*api.ExchangeResult, error)
	Send(ctx context.Context, addr, message string) (*api.SendReply, error)
	Rotate(ctx context.Context) (*api.RotateReply, error)
	ForgetPreview(ctx context.Context, peer string) (*api.ForgetReply, error)
	Forget(ctx context.Context, peer string) (*api.ForgetReply, error)
	Verify(ctx context.Context, req api.VerifyRequest) (*api.VerifyReply, error)
	ExportKey(ctx context.Context, req api.ExportKeyRequest) (*api.ExportKeyReply, error)
}

var (
	_ backend = (*client.Client)(nil)
	_ backend = (*server.Server)(nil)
)

// daemon returns a client for the repo's running daemon, or nil if none
// runs there.
func daemon(dir string) *client.Client {
	api, err := client.New(dir)
	if err != nil {
		return nil
	}
	return api
}

// viaDaemonOr is the one place a command chooses its path: viaDaemon on
// the repo's daemon when it runs (it holds the store's lock), else onRepo
// on the repo opened by the command itself.
func viaDaemonOr[T any](c *cli.Command, viaDaemon func(*client.Client) (T, error), onRepo func(*repo) (T, error)) (T, error) {
	dir := c.String("repo")
	if api, err := client.New(dir); err == nil {
		defer api.Close()
		return viaDaemon(api)
	} else if !errors.Is(err, client.ErrNoDaemon) {
		var zero T
		return zero, err
	}
	r, err := openRepo(dir, false, c.Root().ErrWriter, oneShot) // repo.go
	if err != nil {
		var zero T
		return zero, err
	}
	defer r.Close()
	return onRepo(r)
}

// onBackend runs f on the repo's daemon, or, when none runs, on a node of
// the command's own on the repo. dial, if not nil, is the peer the node
// will dial: a node of the command's own needs its address (no daemon
// knows where it is).
func onBackend(ctx context.Context, c *cli.Command, dial *peer.AddrInfo, f func(backend) error) error {
	dir := c.String("repo")
	_, err := viaDaemonOr(c, func(api *client.Client) (struct{}, error) {
		if err := ownNodeOnly(c, dir); err != nil {
			return struct{}{}, err
		}
		return struct{}{}, f(api)
	}, func(r *repo) (struct{}, error) {
		if dial != nil {
			if dial.ID == peerIDOf(r) {
				return struct{}{}, usagef("%s: %s is this repo's own peer ID", c.Name, dial.ID)
			}
			if len(dial.Addrs) == 0 {
				return struct{}{}, fmt.Errorf("no daemon running on %s to know where %s is: give its full multiaddr, or start one with \"p2pkex daemon --repo %s\"", dir, dial.ID, dir)
			}
		}
		n, err := newRepoNode(ctx, c, r) // nodeconfig.go
		if err != nil {
			return struct{}{}, err
		}
		defer n.Close()
		return struct{}{}, f(server.New(n, server.Options{}))
	})
	return err
}

// ownNodeOnly refuses the node flags when the repo's daemon will do the
// work: it runs with its own settings, and a flag it would ignore must not
// pass silently.
func ownNodeOnly(c *cli.Command, dir string) error {
	for _, f := range nodeFlags() {
		if name := f.Names()[0]; c.IsSet(name) {
			return usagef("--%s applies to a node of the command's own, but the daemon running on %s does this with its own settings (config.json, or its flags): give them to the daemon", name, dir)
		}
	}
	return nil
}

// needDaemon returns a client for the repo's daemon, or says how to start
// one.
func needDaemon(c *cli.Command) (*client.Client, error) {
	dir := c.String("repo")
	if err := requireRepo(dir); err != nil { // repo.go
		return nil, err
	}
	api := daemon(dir)
	if api == nil {
		return nil, fmt.Errorf("no daemon running on %s: start one with \"p2pkex daemon --repo %s\"", dir, shellWord(dir))
	}
	return api, nil
}

// apiTrustEvents returns the trust events an API error carries.
func apiTrustEvents(err error) []api.TrustEvent {
	var ae *api.Error
	if errors.As(err, &ae) {
		return ae.TrustEvents
	}
	return nil
}

// isUsage reports whether err is a mistake in the command line (exit
// status 2): the command's own, or a request the API called bad.
func isUsage(err error) bool {
	var ue usageError
	var ae *api.Error
	return errors.As(err, &ue) || errors.As(err, &ae) && ae.Code == api.CodeBadRequest
}

// timedOut is err, or, when the command's --timeout ended the daemon's
// answer, the line the command's own node gives ("exchange with X timed
// out"): the same words on both paths.
func timedOut(err error, format string, args ...any) error {
	var te *client.TransportError
	if errors.As(err, &te) && errors.Is(err, context.DeadlineExceeded) {
		return &lineError{fmt.Sprintf(format, args...), err}
	}
	return err
}
