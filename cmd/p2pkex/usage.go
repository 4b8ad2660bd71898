package main

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"strings"

	golog "github.com/ipfs/go-log/v2"
	"github.com/urfave/cli/v3"
)

// globalFlags are the options a person may give before the command as well
// as after it ("p2pkex --repo r/alice peers", as kubo allows), with whether
// each takes a value. The repo names the daemon (its api file), so there is
// no --api: --repo is how a command finds the daemon it talks to.
var globalFlags = map[string]bool{"repo": true, "json": false}

// globalFlagsAfterCommand moves the global flags given before the command
// to just after it, where the command's own flags of the same names parse
// them. Anything else before the command is left for the parser to report.
func globalFlagsAfterCommand(args []string) []string {
	if len(args) < 2 {
		return args
	}
	var moved []string
	i := 1
	for i < len(args) {
		a := args[i]
		if a == "--" || !strings.HasPrefix(a, "-") {
			break
		}
		name, _, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		takesValue, ok := globalFlags[name]
		if !ok {
			break
		}
		moved = append(moved, a)
		if takesValue && !hasValue && i+1 < len(args) {
			i++
			moved = append(moved, args[i])
		}
		i++
	}
	if len(moved) == 0 || i >= len(args) || strings.HasPrefix(args[i], "-") {
		return args
	}
	out := append([]string{args[0], args[i]}, moved...)
	return append(out, args[i+1:]...)
}

// rootGlobalFlags lets the root parse the global flags when they stand
// before no command or before another flag, so that the parser names the
// flag that is wrong. Local: the commands have their own.
func rootGlobalFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "repo", Hidden: true, Local: true},
		&cli.BoolFlag{Name: "json", Hidden: true, Local: true},
	}
}

// unknownCommand is the one line for a command that does not exist, with
// the closest one when it is close.
func unknownCommand(c *cli.Command, name string) error {
	var names []string
	for _, sub := range c.Commands {
		if !sub.Hidden {
			names = append(names, sub.Name)
		}
	}
	if s := closest(name, names); s != "" {
		return usagef("unknown command %q: did you mean %q? see '%s --help'", name, s, c.FullName())
	}
	return usagef("unknown command %q: see '%s --help'", name, c.FullName())
}

// oneLineUsageErrors makes every command report a mistake in its flags as
// one line (urfave/cli would print "Incorrect Usage", the help and the error
// again).
func oneLineUsageErrors(c *cli.Command) {
	c.OnUsageError = func(_ context.Context, c *cli.Command, err error, _ bool) error {
		return flagUsageError(c, err)
	}
	for _, sub := range c.Commands {
		oneLineUsageErrors(sub)
		if len(sub.Commands) > 0 && sub.Action == nil {
			// A command of commands ("conformance"): an unknown one is
			// the same line as at the top, not urfave/cli's "No help
			// topic".
			sub.Action = func(_ context.Context, c *cli.Command) error {
				if c.Args().Len() > 0 {
					return unknownCommand(c, c.Args().First())
				}
				return cli.ShowSubcommandHelp(c)
			}
		}
	}
}

var (
	undefinedFlag = regexp.MustCompile(`^flag provided but not defined: -+(.*)$`)
	flagNeedsArg  = regexp.MustCompile(`^flag needs an argument: -+(.*)$`)
	invalidValue  = regexp.MustCompile(`^invalid value "(.*)" for flag -+([^:]*)`)
)

// flagUsageError turns urfave/cli's parse error into the line a person reads.
func flagUsageError(c *cli.Command, err error) error {
	see := fmt.Sprintf("see '%s --help'", c.FullName())
	msg := err.Error()
	if m := undefinedFlag.FindStringSubmatch(msg); m != nil {
		var names []string
		for _, f := range c.Flags {
			for _, n := range f.Names() {
				if len(n) > 1 {
					names = append(names, n)
				}
			}
		}
		what := fmt.Sprintf("unknown flag %s", dashed(m[1]))
		if c.Root() != c {
			what += fmt.Sprintf(" for %q", c.Name)
		}
		if s := closest(m[1], names); s != "" {
			return usagef("%s: did you mean --%s? %s", what, s, see)
		}
		return usagef("%s: %s", what, see)
	}
	if m := flagNeedsArg.FindStringSubmatch(msg); m != nil {
		return usagef("%s needs a value: %s", dashed(m[1]), see)
	}
	if m := invalidValue.FindStringSubmatch(msg); m != nil {
		return usagef("invalid value %q for %s: %s", m[1], dashed(m[2]), see)
	}
	return usagef("%s: %s", strings.TrimSuffix(msg, "."), see)
}

// dashed writes a flag name as the help does: --name, or -h for one letter.
func dashed(name string) string {
	if len(name) == 1 {
		return "-" + name
	}
	return "--" + name
}

// closest returns the name within two edits of s (or that s is a prefix
// or an extension of), or "" when none is close enough to be what the
// person meant.
func closest(s string, names []string) string {
	best, bestD := "", 3
	for _, n := range names {
		d := editDistance(s, n)
		if len(s) >= 3 && (strings.HasPrefix(n, s) || strings.HasPrefix(s, n)) && d > 1 {
			d = 2
		}
		if d < bestD {
			best, bestD = n, d
		}
	}
	if bestD >= 3 || bestD >= len(s) {
		return ""
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// quietLibraryLogs keeps libp2p's own log lines (the fx dependency
// injection's "ERROR p2p-config fxevent ..." before a listen error, for
// one) off a person's terminal: the command reports the error once, in its
// own words. GOLOG_LOG_LEVEL still turns them on for debugging.
func quietLibraryLogs() {
	if strings.Contains(os.Getenv("GOLOG_LOG_LEVEL"), "p2p-config") {
		return
	}
	_ = golog.SetLogLevel("p2p-config", "fatal")
}
