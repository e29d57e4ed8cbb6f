// Command kubectl-mcs is the kubectl plugin `kubectl mcs` (put it on PATH): the fleet's
// multi-cluster services, read from the Karmada control plane and, through Karmada's cluster
// proxy, from each member.
//
//	kubectl mcs status                      members and every exported service
//	kubectl mcs explain <namespace>/<svc>   one service, step by step, and where it breaks
//	kubectl mcs version
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/coredns-mcs/coredns-mcs/internal/mcs"
	"github.com/coredns-mcs/coredns-mcs/internal/mcsctl"
	"github.com/coredns-mcs/coredns-mcs/internal/version"
)

const usage = `kubectl mcs: multi-cluster services on a Karmada fleet (coredns-mcs)

Usage:
  kubectl mcs status [flags]
  kubectl mcs explain <namespace>/<service> [--dns MEMBER=HOST:PORT ...] [flags]
  kubectl mcs version

Flags:
`

type dnsFlag map[string]string

func (d dnsFlag) String() string { return fmt.Sprint(map[string]string(d)) }
func (d dnsFlag) Set(v string) error {
	member, addr, ok := strings.Cut(v, "=")
	if !ok || member == "" || addr == "" {
		return fmt.Errorf("want MEMBER=HOST:PORT, not %q", v)
	}
	d[member] = addr
	return nil
}

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	fs := flag.NewFlagSet("kubectl mcs", flag.ContinueOnError)
	var o mcsctl.Options
	dnsServers := dnsFlag{}
	fs.StringVar(&o.Kubeconfig, "kubeconfig", "", "kubeconfig of the Karmada control plane (default: $KUBECONFIG, ~/.kube/config)")
	fs.StringVar(&o.Context, "context", "", "context of the Karmada control plane in the kubeconfig (default: its current context)")
	fs.StringVar(&o.MembersKubeconfig, "members-kubeconfig", "", "read members with this kubeconfig (contexts named as Karmada's clusters) instead of Karmada's cluster proxy")
	fs.StringVar(&o.ControllerNamespace, "controller-namespace", "karmada-system", "the controller's --leader-election-namespace on Karmada, where it publishes its status")
	fs.StringVar(&o.DerivedPrefix, "derived-prefix", mcs.DefaultDerivedPrefix, "the controller's --derived-prefix")
	fs.DurationVar(&o.Timeout, "request-timeout", 20*time.Second, "bound of each request")
	fs.Var(dnsServers, "dns", "explain: ask this DNS server for the member's answer (MEMBER=HOST:PORT, repeatable)")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usage)
		fs.PrintDefaults()
	}
	if len(args) == 0 {
		fs.Usage()
		return 2
	}
	cmd, rest := args[0], args[1:]
	// Flags may come before or after the positional argument.
	var positional []string
	for len(rest) > 0 {
		if err := fs.Parse(rest); err != nil {
			return 2
		}
		if fs.NArg() == 0 {
			break
		}
		positional = append(positional, fs.Arg(0))
		rest = fs.Args()[1:]
	}
	switch cmd {
	case "version", "--version", "-version":
		fmt.Println(version.String("kubectl-mcs"))
		return 0
	case "status", "explain":
	case "help", "-h", "--help":
		fs.Usage()
		return 0
	default:
		fmt.Fprintf(os.Stderr, "unknown command %q\n\n", cmd)
		fs.Usage()
		return 2
	}
	f, err := mcsctl.NewFleet(o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	switch cmd {
	case "status":
		if len(positional) != 0 {
			fmt.Fprintln(os.Stderr, "status takes no arguments")
			return 2
		}
		if err := mcsctl.Status(ctx, f, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "error:", err)
			return 1
		}
	case "explain":
		if len(positional) != 1 {
			fmt.Fprintln(os.Stderr, "explain takes one <namespace>/<service>")
			return 2
		}
		b, err := mcsctl.Explain(ctx, f, os.Stdout, positional[0], dnsServers)
		if err != nil {
			fmt.Fprintln(os.Stderr, "error:", err)
			return 1
		}
		if b != nil {
			return 3 // the path breaks: scripts can tell
		}
	}
	return 0
}
