// Package lab brings up and down the local clusterset: real etcd, a kube-apiserver per cluster
// (Karmada's control plane and every member), real Karmada v1.16 and, per member,
// kube-controller-manager, kube-scheduler and kwok (the simulated kubelet), all as processes on
// 127.0.0.1, with a data path between the members' pods in network namespaces. Push members are
// joined as `karmadactl join` does; Pull members run a real karmada-agent and the project's
// mcs-agent, as `karmadactl register` leaves them (no credentials of theirs on Karmada).
//
// One implementation behind `make up`, hack/clusterset.sh (test/cmd/clusterset), the Go test
// helper (test/clusterset), the demo and the benchmarks.
package lab

import (
	"bufio"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Config is what the environment asks for (CMCS_* variables, see FromEnv).
type Config struct {
	Root  string // the repository
	Dir   string // state: pki, kubeconfigs, logs, pids
	Cache string // where hack/build-deps.sh keeps the binaries
	// Versions of the components (hack/versions.sh).
	Versions map[string]string

	PortBase    int
	Members     int // Push members: member1..memberN
	PullMembers int // Pull members after them
	KarmadaMCS  bool
	KarmadaQPS  int
	MCSCRDs     string // karmada | mcs-api
	DataPath    string // auto | on | off
}

// FromEnv reads the configuration:
//
//	CMCS_PORT_BASE      first port of the block used on 127.0.0.1 (default 31000; keep it below
//	                    32768, the kernel's ephemeral ports)
//	CMCS_MEMBERS        Push members (default 2)
//	CMCS_PULL_MEMBERS   Pull members, after the Push ones (default 0)
//	CMCS_KARMADA_MCS    on|off: Karmada's built-in MCS controllers (default off: ours replaces them)
//	CMCS_KARMADA_API_QPS N: client limits of karmada-controller-manager and karmada-scheduler
//	CMCS_MCS_CRDS       karmada|mcs-api: the MCS CRDs on the Karmada control plane
//	CMCS_DATAPATH       auto|on|off: pods that really run (auto: on when root with ip/iptables/socat)
//	CMCS_CLUSTERSET_DIR state directory (default _output/clusterset)
//	CMCS_CACHE          the binaries' cache (default ~/.cache/coredns-mcs)
func FromEnv(root string) (*Config, error) {
	c := &Config{Root: root, Versions: map[string]string{}}
	if err := c.readVersions(); err != nil {
		return nil, err
	}
	c.Dir = env("CMCS_CLUSTERSET_DIR", filepath.Join(root, "_output", "clusterset"))
	home, _ := os.UserHomeDir()
	c.Cache = env("CMCS_CACHE", filepath.Join(env("XDG_CACHE_HOME", filepath.Join(home, ".cache")), "coredns-mcs"))
	var err error
	if c.PortBase, err = envInt("CMCS_PORT_BASE", 31000); err != nil {
		return nil, err
	}
	if c.Members, err = envInt("CMCS_MEMBERS", 2); err != nil {
		return nil, err
	}
	if c.PullMembers, err = envInt("CMCS_PULL_MEMBERS", 0); err != nil {
		return nil, err
	}
	if c.KarmadaQPS, err = envInt("CMCS_KARMADA_API_QPS", 0); err != nil {
		return nil, err
	}
	c.KarmadaMCS = env("CMCS_KARMADA_MCS", "off") == "on"
	c.MCSCRDs = env("CMCS_MCS_CRDS", "karmada")
	c.DataPath = env("CMCS_DATAPATH", "auto")
	switch {
	case c.Members < 2:
		return nil, fmt.Errorf("CMCS_MEMBERS must be at least 2 (the seed's member1 and member2), not %d", c.Members)
	case c.PullMembers < 0 || c.Members+c.PullMembers > maxMembers:
		return nil, fmt.Errorf("CMCS_MEMBERS + CMCS_PULL_MEMBERS must be at most %d", maxMembers)
	case c.MCSCRDs != "karmada" && c.MCSCRDs != "mcs-api":
		return nil, fmt.Errorf("CMCS_MCS_CRDS must be karmada or mcs-api, not %s", c.MCSCRDs)
	case c.DataPath != "auto" && c.DataPath != "on" && c.DataPath != "off":
		return nil, fmt.Errorf("CMCS_DATAPATH must be auto, on or off, not %s", c.DataPath)
	case c.PortBase < 1024 || c.lastPort() >= 32768:
		return nil, fmt.Errorf("CMCS_PORT_BASE %d: the clusterset's ports must lie in 1024..32767 (the last would be %d; above 32767 they collide with the kernel's ephemeral ports)",
			c.PortBase, c.lastPort())
	}
	return c, nil
}

// maxMembers: the member CIDRs (10.<8+2i>.0.0/16) stay below Karmada's 10.96.0.0/16.
const maxMembers = 40

func env(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func envInt(k string, def int) (int, error) {
	v := os.Getenv(k)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, fmt.Errorf("%s=%q: not a number", k, v)
	}
	return n, nil
}

// readVersions reads the NAME=value lines of hack/versions.sh.
func (c *Config) readVersions() error {
	f, err := os.Open(filepath.Join(c.Root, "hack", "versions.sh"))
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "=")
		if ok && strings.HasSuffix(k, "_VERSION") && !strings.Contains(v, "$") {
			c.Versions[k] = v
		}
	}
	return sc.Err()
}

// Member is one member cluster's layout.
type Member struct {
	Name  string
	Index int // 1-based
	Pull  bool
	// Ports on 127.0.0.1.
	APIServer, KCM, Scheduler, Kwok, NodeAgent, KarmadaAgentMetrics, KarmadaAgentHealth, MCSAgentMetrics, MCSAgentHealth int
	PodCIDR, ServiceCIDR, APIServerServiceCIDR                                                                           string
	NodeIP, DNSIP                                                                                                        string
}

// Port offsets from the base. Members 1 and 2 keep the ports they always had; members from 3 on
// take 10 ports each from offset 40.
const (
	offEtcd, offEtcdPeer  = 1, 2
	offKarmadaAPIServer   = 10
	offAggregated         = 20
	offWebhook            = 21
	offWebhookHealth      = 22
	offWebhookMetrics     = 23
	offKCMKarmada         = 24
	offKarmadaCMMetrics   = 25
	offKarmadaCMHealth    = 26
	offKarmadaSchedMetric = 27
	offKarmadaSchedHealth = 28
	offMembers            = 40
	portsPerMember        = 10
)

func (c *Config) lastPort() int {
	return c.PortBase + offMembers + portsPerMember*(c.Members+c.PullMembers) + portsPerMember
}

// Port is the base plus an offset.
func (c *Config) Port(off int) int { return c.PortBase + off }

// All returns every member, Push ones first.
func (c *Config) All() []Member {
	var out []Member
	for i := 1; i <= c.Members+c.PullMembers; i++ {
		out = append(out, c.member(i))
	}
	return out
}

func (c *Config) member(i int) Member {
	m := Member{Name: fmt.Sprintf("member%d", i), Index: i, Pull: i > c.Members}
	b := c.PortBase + offMembers + portsPerMember*(i-1)
	m.APIServer, m.KCM, m.Scheduler, m.Kwok, m.NodeAgent = b, b+1, b+2, b+3, b+4
	m.KarmadaAgentMetrics, m.KarmadaAgentHealth, m.MCSAgentMetrics, m.MCSAgentHealth = b+5, b+6, b+7, b+8
	if i <= 2 {
		// Their historical ports (scripts and notes name them).
		m.APIServer = c.PortBase + 10 + i
		m.KCM, m.Scheduler, m.Kwok, m.NodeAgent = c.PortBase+30+i, c.PortBase+32+i, c.PortBase+34+i, c.PortBase+36+i
	}
	// As Karmada's local-up: pod and service CIDRs never overlap between members.
	m.PodCIDR = fmt.Sprintf("10.%d.0.0/16", 8+2*i)
	m.ServiceCIDR = fmt.Sprintf("10.%d.0.0/16", 9+2*i)
	m.APIServerServiceCIDR = m.ServiceCIDR
	if i == 1 {
		// member1's Service CIDRs are dual-stack (the MCS IP-family tests); nothing routes IPv6.
		m.APIServerServiceCIDR += ",fd00:11::/108"
	}
	m.NodeIP = fmt.Sprintf("172.30.%d.1", i)
	m.DNSIP = fmt.Sprintf("10.%d.0.10", 9+2*i)
	return m
}

// KarmadaServiceCIDR is the control plane's Service CIDR.
const KarmadaServiceCIDR = "10.96.0.0/16"

// firstIP is the first host address of a CIDR (the apiserver's Service IP).
func firstIP(cidr string) string {
	p := netip.MustParsePrefix(strings.Split(cidr, ",")[0])
	return p.Addr().Next().String()
}

// Paths.
func (c *Config) pki(name string) string { return filepath.Join(c.Dir, "pki", name) }
func (c *Config) kubeconfig(name string) string {
	return filepath.Join(c.Dir, "kubeconfig", name+".config")
}
func (c *Config) logFile(name string) string { return filepath.Join(c.Dir, "logs", name+".log") }
func (c *Config) pidFile(name string) string { return filepath.Join(c.Dir, "pids", name+".pid") }
func (c *Config) bin(name string) string     { return filepath.Join(c.Root, "_output", "bin", name) }

func (c *Config) kubeDir() string { return filepath.Join(c.Cache, "kube-"+c.Versions["KUBE_VERSION"]) }
func (c *Config) karmadaDir() string {
	return filepath.Join(c.Cache, "karmada-"+c.Versions["KARMADA_VERSION"])
}
func (c *Config) kwokDir() string { return filepath.Join(c.Cache, "kwok-"+c.Versions["KWOK_VERSION"]) }
func (c *Config) etcdBin() string {
	return filepath.Join(c.Cache, "etcd-"+c.Versions["ETCD_VERSION"], "etcd")
}

// Kubectl is the clusterset's kubectl.
func (c *Config) Kubectl() string { return filepath.Join(c.kubeDir(), "kubectl") }

// NetNS is the prefix of the clusterset's network namespaces: a member's node is <NetNS>-<member>.
func (c *Config) NetNS() string { return fmt.Sprintf("cmcs%d", c.PortBase) }

// mcsCRDsDir is where the MCS CRDs installed on the Karmada control plane are.
func (c *Config) mcsCRDsDir() string {
	if c.MCSCRDs == "mcs-api" {
		return filepath.Join(c.Root, "manifests", "crds")
	}
	return filepath.Join(c.karmadaDir(), "crds", "bases", "multicluster")
}
