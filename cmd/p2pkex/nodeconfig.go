package main

// One configuration on every path. The daemon and every command that runs
// a node of its own (exchange, send, rotate, verify, forget without a
// daemon) build that node's protocol and trust settings with nodeSettings,
// from the repo's config.json with the command's flags on top: a trust
// policy, a suite list or a limit set in config.json holds whichever
// command does the work (issue 11: "strict" used to bind only the daemon).

import (
	"context"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/urfave/cli/v3"

	"github.com/p2pkex/p2pkex/node"
	"github.com/p2pkex/p2pkex/protocol"
)

// nodeFlags are the protocol and trust options every node-running command
// takes. They have no defaults of their own: unset, config.json decides.
func nodeFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringSliceFlag{Name: "suite", Usage: "offer only these suites (MLKEM768X25519, X25519), most preferred first (default: config.json's suites)"},
		&cli.IntFlag{Name: "notice-size", Usage: "largest notice in bytes, 128 to 65536 (default: config.json's limits.notice_size, 1024)"},
		&cli.StringFlag{Name: "trust-policy", Usage: "on a key change no rotation accounts for: tofu (refuse it for verified peers), strict (always refuse), accept (default: config.json's trust.policy, tofu)"},
		&cli.BoolFlag{Name: "require-pq", Usage: "offer and accept only post-quantum suites (default: config.json's trust.require_pq, false)"},
	}
}

// nodeFlagReader is what nodeSettings reads of a command's flags.
type nodeFlagReader interface {
	cliFlags
	Int(string) int
}

// nodeSettings turns cfg and the node flags (which win) into the options
// every node of the repo runs with: suites, post-quantum requirement,
// notice size, phase timeout, inbound limits, admission, message grace and
// trust policy. The daemon adds its network options (daemonConfig), a one-shot
// command its "listen nowhere" (newRepoNode).
func nodeSettings(cfg *config, c nodeFlagReader) ([]node.Option, error) {
	suites, err := parseSuites(cfg.Suites, "suites (config.json)")
	if err != nil {
		return nil, err
	}
	if c.IsSet("suite") {
		if suites, err = parseSuites(c.StringSlice("suite"), "--suite"); err != nil {
			return nil, usageError{err.Error()}
		}
	}
	requirePQ := cfg.Trust.RequirePQ
	if c.IsSet("require-pq") {
		requirePQ = c.Bool("require-pq")
	}
	if requirePQ {
		var pq []protocol.Suite
		for _, s := range suites {
			if s.PostQuantum() {
				pq = append(pq, s)
			}
		}
		if len(pq) == 0 {
			return nil, usagef("require_pq leaves no suite to offer: add MLKEM768X25519 to the suites")
		}
		suites = pq
	}

	size := cfg.Limits.NoticeSize
	if c.IsSet("notice-size") {
		size = c.Int("notice-size")
		if size < protocol.MinNoticeSize || size > protocol.MaxNoticeSize {
			return nil, usagef("--notice-size %d outside [%d, %d]", size, protocol.MinNoticeSize, protocol.MaxNoticeSize)
		}
	}
	policyName, what := cfg.Trust.Policy, "trust.policy (config.json)"
	if c.IsSet("trust-policy") {
		policyName, what = c.String("trust-policy"), "--trust-policy"
	}
	policy, err := node.ParseTrustPolicy(policyName)
	if err != nil {
		if what == "--trust-policy" {
			return nil, usageError{err.Error()}
		}
		return nil, err // loadConfig checked it already
	}
	opts := []node.Option{
		node.WithSuites(suites...),
		node.WithRequirePQ(requirePQ),
		node.WithNoticeSize(size),
		node.WithPhaseTimeout(time.Duration(cfg.Limits.PhaseTimeout)),
		node.WithInboundLimits(cfg.Limits.InboundTotal, cfg.Limits.InboundPerPeer),
		node.WithMessageGrace(time.Duration(cfg.Messages.Grace)),
		node.WithTrustPolicy(policy),
	}
	return append(opts, cfg.Admission.options()...), nil // config_admission.go
}

// checkNodeFlags rejects bad node flags before anything runs (on the
// defaults: config.json is read only by the path that runs a node).
func checkNodeFlags(c *cli.Command) error {
	_, err := nodeSettings(defaultConfig(), c)
	return err
}

func parseSuites(names []string, what string) ([]protocol.Suite, error) {
	if len(names) == 0 {
		return protocol.DefaultSuites(), nil
	}
	var suites []protocol.Suite
	for _, n := range names {
		s, err := protocol.ParseSuite(n)
		if err != nil {
			return nil, usagef("%s: %v", what, err)
		}
		suites = append(suites, s)
	}
	return suites, nil
}

// newRepoNode starts a node on the repo r that listens nowhere, for the
// one-shot commands, with the repo's configuration and c's flags.
func newRepoNode(ctx context.Context, c *cli.Command, r *repo) (*node.Node, error) {
	cfg, err := loadConfig(r.dir)
	if err != nil {
		return nil, err
	}
	opts, err := nodeSettings(cfg, c)
	if err != nil {
		return nil, err
	}
	return node.New(ctx, append(opts, node.WithStore(r.store), node.WithLibp2pOptions(libp2p.NoListenAddrs))...)
}
