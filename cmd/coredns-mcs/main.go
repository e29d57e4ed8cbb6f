// Command coredns-mcs is CoreDNS with every stock plugin plus multicluster, which serves the
// KEP-1645 clusterset.local zone. The multicluster directive runs just before kubernetes.
package main

import (
	"fmt"
	"os"

	"github.com/coredns/coredns/core/dnsserver"
	_ "github.com/coredns/coredns/core/plugin" // every stock plugin
	"github.com/coredns/coredns/coremain"

	"github.com/coredns-mcs/coredns-mcs/internal/version"
	_ "github.com/coredns-mcs/coredns-mcs/plugin/multicluster"
)

const (
	directive = "multicluster"
	anchor    = "kubernetes"
)

func init() {
	d, err := insertBefore(dnsserver.Directives, anchor, directive)
	if err != nil {
		panic(err) // a CoreDNS upgrade moved the anchor: fail the build's smoke test, not serve wrong
	}
	dnsserver.Directives = d
}

// insertBefore returns list with name inserted just before anchor. It fails when anchor is
// missing or name is already present, so an upgrade of CoreDNS can never silently reorder the chain.
func insertBefore(list []string, anchor, name string) ([]string, error) {
	at := -1
	for i, d := range list {
		if d == name {
			return nil, fmt.Errorf("directive %q is already in CoreDNS's directive list", name)
		}
		if d == anchor {
			at = i
		}
	}
	if at < 0 {
		return nil, fmt.Errorf("anchor directive %q not found in CoreDNS's directive list; cannot place %q", anchor, name)
	}
	out := make([]string, 0, len(list)+1)
	out = append(out, list[:at]...)
	out = append(out, name)
	return append(out, list[at:]...), nil
}

func main() {
	for _, a := range os.Args[1:] {
		if a == "-version" || a == "--version" {
			// CoreDNS's own -version names CoreDNS; say which coredns-mcs this is first.
			fmt.Println(version.String("coredns-mcs"))
			fmt.Printf("CoreDNS-%s\n", coremain.CoreVersion)
			return
		}
	}
	coremain.Run()
}
