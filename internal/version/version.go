// Package version is the version of coredns-mcs's binaries, stamped at build time from git tags
// (`git describe --tags --always --dirty`, as `make build` and the image recipe do):
//
//	go build -ldflags "-X github.com/coredns-mcs/coredns-mcs/internal/version.Version=v0.2.0" ./cmd/...
//
// A binary built without the stamp (`go build`, `go run`) reports the module version or the VCS
// revision Go recorded, and "dev" when it has neither.
package version

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Version is set with -ldflags -X at build time.
var Version = ""

// Get returns the stamped version, else what the Go toolchain recorded of the build.
func Get() string {
	if Version != "" {
		return Version
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "dev"
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	var rev, dirty string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "-dirty"
			}
		}
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if rev == "" {
		return "dev"
	}
	return rev + dirty
}

// String is the one line a binary prints for --version: "mcs-controller v0.2.0 (go1.26.8 linux/amd64)".
func String(program string) string {
	return fmt.Sprintf("%s %s (%s %s/%s)", program, Get(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
