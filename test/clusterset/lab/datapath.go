package lab

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The data path: traffic between the members' pods, as in the seed ("connected container
// networks").
//
//	host netns: apiservers, kwok, nodeagent-M (one per member)   — nothing of the below lives here
//	<NetNS>-net: the switch, a bridge every node is plugged into
//	<NetNS>-M   (member M's node): kube-proxy-M (iptables), cluster DNS, veth "peer" to the switch
//	            (NodeIP/16), routes to every other member's pod CIDR; the host's
//	            127.0.0.1:<apiserver> is forwarded in through a unix socket (socat), so in-namespace
//	            processes use the same kubeconfigs
//	<NetNS>-M-<uid> (a pod): eth0 with the pod IP kwok assigned, default route via the node;
//	            resolv.conf -> the member's kube-dns ClusterIP (the node agent makes these)
//
// Service CIDRs are not routed between members: a ClusterIP works only where kube-proxy
// programs it. This plumbing is ip(8)'s: the Go here only says which commands.

func (c *Config) dataPathOn() bool {
	switch c.DataPath {
	case "on":
		return true
	case "off":
		return false
	}
	if os.Geteuid() != 0 {
		return false
	}
	for _, b := range []string{"ip", "iptables", "socat"} {
		if _, err := exec.LookPath(b); err != nil {
			return false
		}
	}
	return true
}

func netnsList() map[string]bool {
	out, _ := run("", "ip", "netns", "list")
	have := map[string]bool{}
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) > 0 {
			have[f[0]] = true
		}
	}
	return have
}

func ip(args ...string) error {
	_, err := run("", append([]string{"ip"}, args...)...)
	return err
}

func (c *Config) switchNS() string       { return c.NetNS() + "-net" }
func (c *Config) nodeNS(m Member) string { return c.NetNS() + "-" + m.Name }

func (c *Config) dataPathUp() error {
	if !c.dataPathOn() {
		c.logf("data path off (CMCS_DATAPATH=%s; needs root, ip, iptables, socat): objects only, no traffic", c.DataPath)
		return nil
	}
	for _, b := range []string{"ip", "iptables", "socat"} {
		if _, err := exec.LookPath(b); err != nil {
			return fmt.Errorf("CMCS_DATAPATH=on needs %s (hack/install-packages.sh)", b)
		}
	}
	if !exists(filepath.Join(c.kubeDir(), "kube-proxy")) {
		return fmt.Errorf("missing %s (hack/build-deps.sh kube)", filepath.Join(c.kubeDir(), "kube-proxy"))
	}
	c.logf("data path: building the node agent and the seed's serve/request stand-ins")
	build := exec.Command("go", "build", "-trimpath", "-o", filepath.Join(c.Root, "_output", "bin")+"/", "./test/cmd/nodeagent", "./test/cmd/serve", "./test/cmd/request")
	build.Dir, build.Stdout, build.Stderr = c.Root, os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return fmt.Errorf("go build ./test/cmd/...: %w", err)
	}
	if err := os.MkdirAll(filepath.Join(c.Dir, "net"), 0o755); err != nil {
		return err
	}
	have := netnsList()
	sw := c.switchNS()
	if !have[sw] {
		for _, args := range [][]string{{"netns", "add", sw}, {"-n", sw, "link", "set", "lo", "up"},
			{"-n", sw, "link", "add", "br0", "type", "bridge"}, {"-n", sw, "link", "set", "br0", "up"}} {
			if err := ip(args...); err != nil {
				return err
			}
		}
	}
	members := c.All()
	for _, m := range members {
		ns := c.nodeNS(m)
		if !have[ns] {
			if err := ip("netns", "add", ns); err != nil {
				return err
			}
			if err := ip("-n", ns, "link", "set", "lo", "up"); err != nil {
				return err
			}
			if _, err := run("", "ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv4.ip_forward=1"); err != nil {
				return err
			}
		}
		if ip("-n", ns, "link", "show", "peer") != nil {
			port := "m" + strconv.Itoa(m.Index)
			for _, args := range [][]string{{"-n", ns, "link", "add", "peer", "type", "veth", "peer", "name", port, "netns", sw},
				{"-n", sw, "link", "set", port, "master", "br0"}, {"-n", sw, "link", "set", port, "up"},
				{"-n", ns, "addr", "add", m.NodeIP + "/16", "dev", "peer"}, {"-n", ns, "link", "set", "peer", "up"}} {
				if err := ip(args...); err != nil {
					return err
				}
			}
		}
	}
	for _, m := range members {
		for _, o := range members {
			if o.Name != m.Name {
				if err := ip("-n", c.nodeNS(m), "route", "replace", o.PodCIDR, "via", o.NodeIP); err != nil {
					return err
				}
			}
		}
	}
	for _, m := range members {
		ns, sock := c.nodeNS(m), filepath.Join(c.Dir, "net", m.Name+"-apiserver.sock")
		if err := c.start("apiserver-forward-"+m.Name, nil, "socat", "UNIX-LISTEN:"+sock+",fork,unlink-early", fmt.Sprintf("TCP:127.0.0.1:%d", m.APIServer)); err != nil {
			return err
		}
		if err := c.start("apiserver-forward-in-"+m.Name, nil, "ip", "netns", "exec", ns, "socat",
			fmt.Sprintf("TCP-LISTEN:%d,bind=127.0.0.1,fork,reuseaddr", m.APIServer), "UNIX-CONNECT:"+sock); err != nil {
			return err
		}
		if err := c.start("kube-proxy-"+m.Name, nil, "ip", "netns", "exec", ns, filepath.Join(c.kubeDir(), "kube-proxy"),
			"--kubeconfig", c.kubeconfig(m.Name), "--hostname-override", m.Name+"-control-plane", "--proxy-mode", "iptables",
			"--conntrack-max-per-core", "0", "--cluster-cidr", m.PodCIDR, "--metrics-bind-address", "127.0.0.1:10249",
			"--healthz-bind-address", "127.0.0.1:10256"); err != nil {
			return err
		}
		if err := c.start("nodeagent-"+m.Name, []int{m.NodeAgent}, c.bin("nodeagent"), "--kubeconfig", c.kubeconfig(m.Name),
			"--node", m.Name+"-control-plane", "--member", m.Name, "--prefix", c.NetNS(), "--node-netns", ns,
			"--state-dir", filepath.Join(c.Dir, "pods", m.Name), "--bin-dir", filepath.Join(c.Root, "_output", "bin"), "--cluster-dns", m.DNSIP,
			"--kubelet-address", fmt.Sprintf("127.0.0.1:%d", m.NodeAgent), "--tls-cert-file", c.pki("kwok.crt"),
			"--tls-private-key-file", c.pki("kwok.key"), "--client-ca-file", c.pki("ca.crt"), "--kwok-url", fmt.Sprintf("https://127.0.0.1:%d", m.Kwok)); err != nil {
			return err
		}
		// kube-dns: the member's cluster DNS Service. Its endpoint is the node (host network,
		// like a hostNetwork DNS pod); `hack/clusterset.sh dns MEMBER` runs coredns-mcs there.
		if err := c.apply(m.Name, fmt.Sprintf(`apiVersion: v1
kind: Service
metadata:
  name: kube-dns
  namespace: kube-system
  labels: {k8s-app: kube-dns, kubernetes.io/name: CoreDNS}
spec:
  clusterIP: %[1]s
  ports:
    - {name: dns, port: 53, protocol: UDP}
    - {name: dns-tcp, port: 53, protocol: TCP}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: kube-dns-node
  namespace: kube-system
  labels: {kubernetes.io/service-name: kube-dns, endpointslice.kubernetes.io/managed-by: clusterset.coredns-mcs.io}
addressType: IPv4
endpoints:
  - addresses: ["%[2]s"]
    conditions: {ready: true}
    nodeName: %[3]s-control-plane
ports:
  - {name: dns, port: 53, protocol: UDP}
  - {name: dns-tcp, port: 53, protocol: TCP}
`, m.DNSIP, m.NodeIP, m.Name)); err != nil {
			return err
		}
	}
	for _, m := range members {
		ns := c.nodeNS(m)
		if err := c.waitFor("kube-proxy in "+ns, time.Minute, func() error {
			_, err := run("", "ip", "netns", "exec", ns, "curl", "-sf", "http://127.0.0.1:10256/healthz")
			return err
		}); err != nil {
			return err
		}
	}
	var nodes []string
	for _, m := range members {
		nodes = append(nodes, c.nodeNS(m)+" ("+m.NodeIP+")")
	}
	c.logf("data path: nodes %s on switch %s, kube-proxy + node agent per member", strings.Join(nodes, ", "), sw)
	return nil
}

// dataPathDown deletes every network namespace of this clusterset and kills what runs in it
// (processes started by start are stopped by pid before this).
func (c *Config) dataPathDown() {
	if _, err := exec.LookPath("ip"); err != nil {
		return
	}
	var names []string
	for ns := range netnsList() {
		rest, ok := strings.CutPrefix(ns, c.NetNS()+"-")
		if ok && (rest == "net" || strings.HasPrefix(rest, "member")) {
			names = append(names, ns)
		}
	}
	sort.Sort(sort.Reverse(sort.StringSlice(names))) // pods before their node
	var killed []int
	for _, ns := range names {
		out, _ := run("", "ip", "netns", "pids", ns)
		for _, f := range strings.Fields(out) {
			if pid, err := strconv.Atoi(f); err == nil && syscall.Kill(pid, syscall.SIGKILL) == nil {
				killed = append(killed, pid)
			}
		}
		_ = ip("netns", "del", ns)
		_ = os.RemoveAll(filepath.Join("/etc/netns", ns))
	}
	// SIGKILL is delivered asynchronously: wait until they are gone, so down returns clean.
	for _, pid := range killed {
		for i := 0; i < 50 && alive(pid); i++ {
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// ClusterDNS runs coredns-mcs (or bin) with corefile.example as member's cluster DNS, on port 53
// of the member's node namespace (the kube-dns Service's endpoint).
func (c *Config) ClusterDNS(member, bin string) error {
	m, ok := c.memberByName(member)
	if !ok {
		return fmt.Errorf("no member %s", member)
	}
	if bin == "" {
		bin = c.bin("coredns-mcs")
	}
	if !c.dataPathOn() {
		return fmt.Errorf("the data path is off (CMCS_DATAPATH=%s)", c.DataPath)
	}
	if !netnsList()[c.nodeNS(m)] {
		return fmt.Errorf("no node namespace %s: run 'hack/clusterset.sh up' first", c.nodeNS(m))
	}
	if !exists(bin) {
		return fmt.Errorf("missing %s (make build)", bin)
	}
	corefile, err := run("", filepath.Join(c.Root, "hack", "member-corefile.sh"), c.kubeconfig(m.Name), m.Name, "53", "8080", "8181", "9153", "5300")
	if err != nil {
		return err
	}
	path := filepath.Join(c.Dir, "net", "Corefile."+m.Name)
	if err := os.WriteFile(path, []byte(corefile), 0o644); err != nil {
		return err
	}
	if err := c.start("cluster-dns-"+m.Name, nil, "ip", "netns", "exec", c.nodeNS(m), bin, "-conf", path); err != nil {
		return err
	}
	if err := c.waitFor("cluster DNS of "+m.Name+" ready", time.Minute, func() error {
		_, err := run("", "ip", "netns", "exec", c.nodeNS(m), "curl", "-sf", "http://127.0.0.1:8181/ready")
		return err
	}); err != nil {
		return err
	}
	c.logf("cluster DNS of %s: %s on %s:53 behind kube-dns %s (Corefile %s)", m.Name, bin, m.NodeIP, m.DNSIP, path)
	return nil
}

func (c *Config) memberByName(name string) (Member, bool) {
	for _, m := range c.All() {
		if m.Name == name {
			return m, true
		}
	}
	return Member{}, false
}
