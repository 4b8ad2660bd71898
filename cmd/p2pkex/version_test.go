package main

import (
	"strings"
	"testing"
)

// TestWriteVersion: what a build with VCS information prints (the test
// binary itself records none).
func TestWriteVersion(t *testing.T) {
	for _, tc := range []struct {
		v    versionJSON
		want string
	}{
		{versionJSON{Version: "v1.2.3", Revision: "e1098acf", RevisionTime: "2026-12-05T17:08:29Z", Modified: true,
			Go: "go1.26.8", OS: "linux", Arch: "amd64", Protocol: "/p2pkex/1.0.0"},
			"p2pkex v1.2.3\nrevision e1098acf (2026-12-05T17:08:29Z), modified\ngo       go1.26.8 linux/amd64\nprotocol /p2pkex/1.0.0\n"},
		{versionJSON{Version: "(devel)", Go: "go1.26.8", OS: "linux", Arch: "arm64", Protocol: "/p2pkex/1.0.0"},
			"p2pkex (devel)\nrevision unknown (the build recorded no VCS information)\ngo       go1.26.8 linux/arm64\nprotocol /p2pkex/1.0.0\n"},
	} {
		var b strings.Builder
		writeVersion(&b, tc.v)
		if b.String() != tc.want {
			t.Errorf("got\n%s\nwant\n%s", b.String(), tc.want)
		}
	}
	// The build's own version names the module and the Go version it
	// was built with.
	v := buildVersion()
	if v.Module != "github.com/p2pkex/p2pkex" || !strings.HasPrefix(v.Go, "go1.") || v.Protocol != "/p2pkex/1.0.0" {
		t.Errorf("buildVersion() = %+v", v)
	}
}
