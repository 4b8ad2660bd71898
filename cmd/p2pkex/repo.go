package main

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/urfave/cli/v3"

	"github.com/p2pkex/p2pkex/api/server"
	"github.com/p2pkex/p2pkex/peerstore"
)

// A repo is a directory holding one node's state, ~/.p2pkex unless --repo
// or P2PKEX_PATH names another:
//
//	identity.key   the libp2p identity key (protobuf, mode 0400)
//	config.json    settings (config.go; mode 0600; absent: defaults)
//	store/         the peerstore (bbolt, mode 0700/0600)
//	inbox.db       received messages (bbolt, mode 0600; inbox.go)
//	api.sock       the running daemon's control API (api/server; docs/API.md)
//	api            written by the running daemon: the path of api.sock
const (
	identityFile = "identity.key"
	storeDir     = "store"
	defaultRepo  = ".p2pkex"
)

// defaultRepoDir is ~/.p2pkex, or "" where there is no home directory.
func defaultRepoDir() string {
	home, err := os.UserHomeDir()
	if err != nil || home == "" {
		return ""
	}
	return filepath.Join(home, defaultRepo)
}

type repo struct {
	dir      string
	identity crypto.PrivKey
	store    peerstore.Store
}

// noRepoDir is the mistake of a command run without a repo to run on.
var noRepoDir = usagef("no repo: give --repo DIR or set P2PKEX_PATH (there is no home directory for ~/%s)", defaultRepo)

// requireRepo checks that dir is an initialised repo (it has an identity).
// Only "p2pkex init" and "p2pkex daemon --init" create one: a mistyped
// --repo must not become a new identity without a word (as kubo refuses
// and says "ipfs init").
func requireRepo(dir string) error {
	if dir == "" {
		return noRepoDir
	}
	st, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return noRepo(dir)
	case err != nil:
		return fmt.Errorf("repo %s: %w", dir, pathProblem(err))
	case !st.IsDir():
		return fmt.Errorf("repo %s is not a directory", dir)
	}
	if _, err := os.Stat(filepath.Join(dir, identityFile)); errors.Is(err, fs.ErrNotExist) {
		return noRepo(dir)
	}
	return nil
}

// notSelf refuses the repo's own peer ID before either path runs (the
// daemon's or the command's own node), so that both answer with the same
// line and exit code. It reads identity.key, which the daemon's lock does
// not cover; a missing or broken repo is left to the path taken to report.
func notSelf(c *cli.Command, id peer.ID) error {
	sk, err := loadOrCreateIdentity(filepath.Join(c.String("repo"), identityFile), false)
	if err != nil {
		return nil
	}
	if own, err := peer.IDFromPrivateKey(sk); err == nil && own == id {
		return usagef("%s: %s is this repo's own peer ID", c.Name, id)
	}
	return nil
}

// peerIDArg is the one PEER argument of forget and verify: a peer ID, or a
// multiaddr ending in one, that is not this repo's own.
func peerIDArg(c *cli.Command) (peer.ID, error) {
	if c.Args().Len() != 1 {
		return "", usagef("%s: want one PEER (peer ID or MULTIADDR), got %d arguments", c.Name, c.Args().Len())
	}
	p, err := server.ParsePeerID(c.Args().First())
	if err != nil {
		return "", err
	}
	return p, notSelf(c, p)
}

func noRepo(dir string) error {
	return fmt.Errorf("no repo at %s: run \"p2pkex init --repo %s\"", dir, shellWord(dir))
}

// shellWord quotes s for a command a person copies into a shell.
func shellWord(s string) string {
	if s == "" || strings.ContainsAny(s, " \t'\"$\\`;&|*?<>()#~") {
		return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
	}
	return s
}

// pathProblem is the operating system's reason without the Go wrapping
// ("stat X: permission denied" -> "permission denied").
func pathProblem(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// repoUse says what a command does with the repo it opens, which decides
// how its store is opened (openStore).
type repoUse bool

const (
	// oneShot: the command reads or changes a few peers, or none, and
	// closes the repo; a node it runs listens nowhere and exchanges with
	// the one peer it dials.
	oneShot repoUse = false
	// serving: the daemon, which serves exchanges with any peer until it
	// stops.
	serving repoUse = true
)

// openStore opens the repo's store. Only a serving store is opened with
// the walk of its lookup tree (peerstore.WithoutWarm): the walk maps the
// tree's pages so that the daemon's first exchanges find them, and costs
// the open a page fault per 27 or so known peers (tens of milliseconds at
// 100,000 peers with the page cache warm, a few tenths of a second from
// the disk), which a one-shot command would pay for the one or two peers
// it reads (docs/performance/store.md, "Opening without the warm walk").
func openStore(dir string, use repoUse, opts ...peerstore.BoltOption) (peerstore.Store, error) {
	if h := testHookOpenStore.Load(); h != nil {
		(*h)(dir, use)
	}
	if use != serving {
		opts = append(opts, peerstore.WithoutWarm())
	}
	return peerstore.OpenBolt(filepath.Join(dir, storeDir), opts...)
}

// testHookOpenStore, if set, is called by openStore with the repo and how
// its store is opened.
var testHookOpenStore atomic.Pointer[func(dir string, use repoUse)]

// openRepo opens dir, creating it when create is set (init, daemon
// --init); otherwise dir must be a repo already (requireRepo). It takes
// the store's lock: one process per repo. A store of an older schema
// version is migrated, once, and the user told on notice (seconds with many
// peers: the command would otherwise seem to hang). use is what the command
// does with the repo (openStore).
func openRepo(dir string, create bool, notice io.Writer, use repoUse) (*repo, error) {
	if dir == "" {
		return nil, noRepoDir
	}
	if !create {
		if err := requireRepo(dir); err != nil {
			return nil, err
		}
	}
	st, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist) && create:
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("create repo %s: %w", dir, pathProblem(err))
		}
	case err != nil:
		return nil, fmt.Errorf("repo %s: %w", dir, pathProblem(err))
	case !st.IsDir():
		return nil, fmt.Errorf("repo %s is not a directory", dir)
	}
	idPath := filepath.Join(dir, identityFile)
	_, statErr := os.Stat(idPath)
	id, err := loadOrCreateIdentity(idPath, create)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(dir, configFile)); errors.Is(statErr, fs.ErrNotExist) && errors.Is(err, fs.ErrNotExist) {
		// A new repo: write the default config next to the new identity.
		if err := writeConfig(dir, defaultConfig()); err != nil {
			return nil, err
		}
	}
	store, err := openStore(dir, use, peerstore.WithMigrationNotice(func(from, to int) {
		fmt.Fprintf(notice, "p2pkex: upgrading the store of repo %s from schema version %d to %d (once)\n", dir, from, to)
	}))
	if errors.Is(err, peerstore.ErrLocked) {
		return nil, fmt.Errorf("repo %s is locked by another p2pkex process", dir)
	}
	if err != nil {
		return nil, fmt.Errorf("open store of repo %s: %w", dir, err)
	}
	r := &repo{dir: dir, identity: id, store: store}
	if err := r.syncIdentity(); err != nil {
		store.Close()
		return nil, err
	}
	return r, nil
}

// syncIdentity makes the store's identity the repo's identity.key.
func (r *repo) syncIdentity() error {
	have, err := r.store.Identity()
	if errors.Is(err, peerstore.ErrNotFound) {
		return r.store.SetIdentity(r.identity)
	}
	if err != nil {
		return fmt.Errorf("read identity from store: %w", err)
	}
	if !have.Equals(r.identity) {
		return fmt.Errorf("repo %s: %s does not match the identity in the store", r.dir, identityFile)
	}
	return nil
}

func (r *repo) Close() error { return r.store.Close() }

// loadOrCreateIdentity reads the identity key, or creates it (O_EXCL, 0400).
func loadOrCreateIdentity(path string, create bool) (crypto.PrivKey, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		sk, err := crypto.UnmarshalPrivateKey(b)
		if err != nil {
			return nil, fmt.Errorf("%s: not a libp2p private key: %w", path, err)
		}
		return sk, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("read identity: %w", err)
	}
	if !create {
		return nil, fmt.Errorf("no identity at %s", path)
	}
	sk, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		return nil, err
	}
	b, err = crypto.MarshalPrivateKey(sk)
	if err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o400)
	if err != nil {
		return nil, fmt.Errorf("create identity: %w", err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		os.Remove(path)
		return nil, fmt.Errorf("write identity: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return nil, err
	}
	return sk, f.Close()
}
