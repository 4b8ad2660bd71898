package main

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"

	"github.com/urfave/cli/v3"

	"github.com/p2pkex/p2pkex/protocol"
)

// versionJSON is "version --json"'s output. Its fields are stable:
// version (the module version, "(devel)" for a build from a work tree
// without one), module, revision (the VCS commit, "" if the build did not
// record one), revision_time (RFC 3339, "" if none), modified (the work tree
// had uncommitted changes), go, os, arch, and protocol (the protocol ID the
// build speaks).
type versionJSON struct {
	Version      string `json:"version"`
	Module       string `json:"module"`
	Revision     string `json:"revision"`
	RevisionTime string `json:"revision_time"`
	Modified     bool   `json:"modified"`
	Go           string `json:"go"`
	OS           string `json:"os"`
	Arch         string `json:"arch"`
	Protocol     string `json:"protocol"`
}

// buildVersion reads what the Go toolchain recorded in the binary
// (runtime/debug.ReadBuildInfo): go build and go install record the module
// version and, from a VCS checkout, the revision.
func buildVersion() versionJSON {
	v := versionJSON{Version: "(devel)", Module: "github.com/p2pkex/p2pkex", Go: runtime.Version(),
		OS: runtime.GOOS, Arch: runtime.GOARCH, Protocol: string(protocol.ID)}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return v
	}
	if bi.Main.Path != "" {
		v.Module = bi.Main.Path
	}
	if bi.Main.Version != "" {
		v.Version = bi.Main.Version
	}
	if bi.GoVersion != "" {
		v.Go = bi.GoVersion
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			v.Revision = s.Value
		case "vcs.time":
			v.RevisionTime = s.Value
		case "vcs.modified":
			v.Modified = s.Value == "true"
		}
	}
	return v
}

func printVersion(w io.Writer, asJSON bool) error {
	v := buildVersion()
	if asJSON {
		return printJSON(w, v)
	}
	writeVersion(w, v)
	return nil
}

// writeVersion prints v as "p2pkex version" does.
func writeVersion(w io.Writer, v versionJSON) {
	fmt.Fprintf(w, "p2pkex %s\n", v.Version)
	rev := "unknown (the build recorded no VCS information)"
	if v.Revision != "" {
		rev = v.Revision
		if v.RevisionTime != "" {
			rev += " (" + v.RevisionTime + ")"
		}
		if v.Modified {
			rev += ", modified"
		}
	}
	fmt.Fprintf(w, "revision %s\n", rev)
	fmt.Fprintf(w, "go       %s %s/%s\n", v.Go, v.OS, v.Arch)
	fmt.Fprintf(w, "protocol %s\n", v.Protocol)
}

func init() {
	// --version prints what "p2pkex version" prints. Only the long form:
	// -v is left free.
	cli.VersionFlag = &cli.BoolFlag{Name: "version", Usage: "print the version (as \"p2pkex version\")", HideDefault: true, Local: true}
	cli.VersionPrinter = func(c *cli.Command) { _ = printVersion(c.Root().Writer, false) }
}

func versionCommand() *cli.Command {
	return &cli.Command{
		Name:  "version",
		Usage: "print the version, VCS revision, Go version and protocol",
		Description: `Prints what the build recorded: the module version ("(devel)" for a
build from a work tree), the VCS revision and its time (and whether the
work tree had changes), the Go version and platform, and the protocol ID.
"p2pkex --version" prints the same.

--json prints one object: version, module, revision, revision_time,
modified, go, os, arch, protocol.

Examples:
  p2pkex version
  p2pkex version --json`,
		Flags: []cli.Flag{jsonFlag()},
		Action: func(ctx context.Context, c *cli.Command) error {
			if err := noArgs(c); err != nil {
				return err
			}
			return printVersion(c.Root().Writer, c.Bool("json"))
		},
	}
}
