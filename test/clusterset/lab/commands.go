package lab

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

func (c *Config) logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "[clusterset %s] %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

// The member counts of a clusterset are recorded when it comes up: later commands (env, status,
// dns, another up) see its members whatever their environment says, and an up asking for more
// members adds them.
func (c *Config) recordFile() string { return filepath.Join(c.Dir, "members") }

// adopt takes the recorded member counts (the larger of them and the asked ones for up).
func (c *Config) adopt(up bool) {
	raw, err := os.ReadFile(c.recordFile())
	if err != nil {
		return
	}
	var push, pull int
	if _, err := fmt.Sscanf(string(raw), "%d %d", &push, &pull); err != nil {
		return
	}
	if !up || push > c.Members {
		c.Members = push
	}
	if !up || pull > c.PullMembers {
		c.PullMembers = pull
	}
}

// processes are the clusterset's own processes, in the order they stop.
func (c *Config) processes() []string {
	out := []string{"karmada-scheduler", "karmada-controller-manager"}
	for _, m := range c.All() {
		if m.Pull {
			out = append(out, "mcs-agent-"+m.Name, "karmada-agent-"+m.Name)
		}
	}
	out = append(out, "karmada-webhook", "karmada-aggregated-apiserver")
	for _, m := range c.All() {
		out = append(out, "kwok-"+m.Name, "kube-scheduler-"+m.Name, "kube-controller-manager-"+m.Name)
	}
	out = append(out, "kube-controller-manager-karmada", "apiserver-karmada")
	for _, m := range c.All() {
		out = append(out, "apiserver-"+m.Name)
	}
	return append(out, "etcd")
}

func (c *Config) checkBinaries() error {
	var missing []string
	bins := []string{c.etcdBin(), c.Kubectl()}
	for _, b := range []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler"} {
		bins = append(bins, filepath.Join(c.kubeDir(), b))
	}
	for _, b := range []string{"controller-manager", "scheduler", "webhook", "aggregated-apiserver"} {
		bins = append(bins, filepath.Join(c.karmadaDir(), "karmada-"+b))
	}
	if c.PullMembers > 0 {
		bins = append(bins, filepath.Join(c.karmadaDir(), "karmada-agent"), c.bin("mcs-agent"))
	}
	bins = append(bins, filepath.Join(c.kwokDir(), "kwok"))
	for _, b := range bins {
		if !exists(b) {
			missing = append(missing, b)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("missing binaries (run 'make deps build' or hack/build-deps.sh): %s", strings.Join(missing, " "))
	}
	return nil
}

// Up brings the clusterset up; what runs already is kept (it is idempotent), what is missing is
// started.
func (c *Config) Up() error {
	unlock, err := c.lock()
	if err != nil {
		return err
	}
	defer unlock()
	c.adopt(true)
	if err := c.checkBinaries(); err != nil {
		return err
	}
	if err := c.up(); err != nil {
		return c.diagnose(err)
	}
	return nil
}

func (c *Config) up() error {
	t0 := time.Now()
	for _, d := range []string{"logs", "pids", "kubeconfig"} {
		if err := os.MkdirAll(filepath.Join(c.Dir, d), 0o755); err != nil {
			return err
		}
	}
	if err := os.WriteFile(c.recordFile(), []byte(fmt.Sprintf("%d %d\n", c.Members, c.PullMembers)), 0o644); err != nil {
		return err
	}
	if err := c.raiseHostLimits(); err != nil {
		return err
	}
	if err := c.makePKI(); err != nil {
		return err
	}
	members := c.All()
	if err := c.writeKubeconfig(c.kubeconfig("karmada"), nil, kubeContext{"karmada", "karmada"}); err != nil {
		return err
	}
	for _, m := range members {
		if err := c.writeKubeconfig(c.kubeconfig(m.Name), nil, kubeContext{m.Name, m.Name}); err != nil {
			return err
		}
	}
	c.logf("etcd %s on 127.0.0.1:%d", c.Versions["ETCD_VERSION"], c.Port(offEtcd))
	if err := c.startEtcd(); err != nil {
		return err
	}
	if err := c.waitFor("etcd", 30*time.Second, func() error {
		_, err := run("", "curl", "-sf", "--max-time", "2", fmt.Sprintf("http://127.0.0.1:%d/health", c.Port(offEtcd)))
		return err
	}); err != nil {
		return err
	}
	c.logf("kube-apiserver %s 'karmada' on %s", c.Versions["KUBE_VERSION"], c.server("karmada"))
	if err := c.startAPIServer("karmada", c.Port(offKarmadaAPIServer), KarmadaServiceCIDR); err != nil {
		return err
	}
	for _, m := range members {
		c.logf("kube-apiserver %s '%s' on %s", c.Versions["KUBE_VERSION"], m.Name, c.server(m.Name))
		if err := c.startAPIServer(m.Name, m.APIServer, m.APIServerServiceCIDR); err != nil {
			return err
		}
	}
	for _, cl := range append([]string{"karmada"}, names(members)...) {
		if err := c.waitFor("kube-apiserver "+cl, 90*time.Second, func() error {
			_, err := c.kubectl(cl, "", "get", "--raw", "/readyz")
			return err
		}); err != nil {
			return err
		}
	}
	c.logf("kube-controller-manager for the Karmada control plane")
	if err := c.startKCM("karmada", c.Port(offKCMKarmada),
		"namespace,garbagecollector,serviceaccount-token,ttl-after-finished,bootstrapsigner,tokencleaner,csrcleaner,csrsigning,clusterrole-aggregation",
		KarmadaServiceCIDR); err != nil {
		return err
	}
	for _, m := range members {
		mode := "Push"
		if m.Pull {
			mode = "Pull"
		}
		c.logf("%s (%s): kube-controller-manager, kube-scheduler, kwok (pods %s, services %s)", m.Name, mode, m.PodCIDR, m.ServiceCIDR)
		if err := c.startMember(m); err != nil {
			return err
		}
		if err := c.bootstrapMember(m); err != nil {
			return err
		}
	}
	c.logf("Karmada %s: CRDs, aggregated apiserver, webhook", c.Versions["KARMADA_VERSION"])
	if err := c.bootstrapKarmada(); err != nil {
		return err
	}
	if err := c.startKarmada(); err != nil {
		return err
	}
	if err := c.waitFor("karmada-webhook", time.Minute, func() error {
		_, err := run("", "curl", "-skf", "--max-time", "2", fmt.Sprintf("https://127.0.0.1:%d/readyz/", c.Port(offWebhook)))
		return err
	}); err != nil {
		return err
	}
	if err := c.waitFor("cluster.karmada.io (karmada-aggregated-apiserver)", time.Minute, func() error {
		_, err := c.kubectl("karmada", "", "get", "clusters")
		return err
	}); err != nil {
		return err
	}
	c.logf("Karmada controller-manager (built-in MCS controllers: %v) and scheduler", c.KarmadaMCS)
	if err := c.startKarmadaControllers(); err != nil {
		return err
	}
	for _, m := range members {
		if m.Pull {
			c.logf("%s: registered in Pull mode (karmada-agent, mcs-agent)", m.Name)
			if err := c.registerPull(m); err != nil {
				return err
			}
			if err := c.startKarmadaAgent(m); err != nil {
				return err
			}
		} else if err := c.joinPush(m); err != nil {
			return err
		}
	}
	for _, m := range members {
		if err := c.waitFor("node "+m.Name+"-control-plane Ready (kwok)", time.Minute, func() error { return c.nodeReady(m) }); err != nil {
			return err
		}
		if err := c.waitFor("Cluster "+m.Name+" Ready in Karmada", 90*time.Second, func() error { return c.clusterReady(m.Name) }); err != nil {
			return err
		}
	}
	for _, m := range members {
		if m.Pull {
			if err := c.StartMCSAgent(m); err != nil {
				return err
			}
		}
	}
	if err := c.dataPathUp(); err != nil {
		return err
	}
	if err := c.writePublicKubeconfigs(); err != nil {
		return err
	}
	c.logf("up in %s", time.Since(t0).Round(time.Second))
	return c.Status(os.Stdout)
}

func names(ms []Member) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.Name)
	}
	return out
}

// writePublicKubeconfigs writes karmada.config (context karmada-apiserver) and members.config
// (one context per member).
func (c *Config) writePublicKubeconfigs() error {
	if err := c.writeKubeconfig(filepath.Join(c.Dir, "karmada.config"), nil, kubeContext{"karmada-apiserver", "karmada"}); err != nil {
		return err
	}
	var ctxs []kubeContext
	for _, m := range c.All() {
		ctxs = append(ctxs, kubeContext{m.Name, m.Name})
	}
	return c.writeKubeconfig(filepath.Join(c.Dir, "members.config"), nil, ctxs...)
}

// Down stops everything (first what others registered beside the clusterset, then the data
// path, then the clusterset), removes the state and keeps the logs in logs.prev.
func (c *Config) Down() error {
	unlock, err := c.lock()
	if err != nil {
		return err
	}
	defer unlock()
	c.adopt(false)
	own := c.processes()
	for _, n := range c.pidNames() {
		if !slices.Contains(own, n) {
			c.stop(n)
		}
	}
	c.dataPathDown()
	for _, n := range own {
		c.stop(n)
	}
	for _, n := range c.pidNames() { // a member beyond the recorded counts
		c.stop(n)
	}
	if exists(c.Dir) {
		prev := filepath.Join(c.Dir, "logs.prev")
		_ = os.RemoveAll(prev)
		if exists(filepath.Join(c.Dir, "logs")) {
			_ = os.Rename(filepath.Join(c.Dir, "logs"), prev)
		}
		entries, _ := os.ReadDir(c.Dir)
		for _, e := range entries {
			if e.Name() != "logs.prev" {
				_ = os.RemoveAll(filepath.Join(c.Dir, e.Name()))
			}
		}
	}
	c.logf("down (logs of this run: %s)", filepath.Join(c.Dir, "logs.prev"))
	return nil
}

// Status prints every process and, when all run, the Clusters; it fails when one does not run.
func (c *Config) Status(w io.Writer) error {
	c.adopt(false)
	tw := tabwriter.NewWriter(w, 0, 0, 1, ' ', 0)
	fmt.Fprintln(tw, "PROCESS\tPID\tSTATE")
	down := 0
	for _, n := range c.processes() {
		state := "running"
		if !c.Running(n) {
			state, down = "stopped", down+1
		}
		pid := ""
		if p := c.pidOf(n); p > 0 {
			pid = strconv.Itoa(p)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", n, pid, state)
	}
	tw.Flush()
	if down > 0 {
		return fmt.Errorf("%d processes of the clusterset are not running", down)
	}
	out, err := c.kubectl("karmada", "", "get", "clusters")
	fmt.Fprintf(w, "\n%s\n", out)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "Karmada control plane: export KUBECONFIG=%s   (context karmada-apiserver)\n", filepath.Join(c.Dir, "karmada.config"))
	fmt.Fprintf(w, "Members:               export KUBECONFIG=%s   (contexts %s)\n", filepath.Join(c.Dir, "members.config"), strings.Join(names(c.All()), ", "))
	fmt.Fprintf(w, "kubectl %s:  %s\n", c.Versions["KUBE_VERSION"], c.Kubectl())
	return nil
}

// Env prints the clusterset's description, NAME=value per line (the tests, the demo and the
// benchmarks read it).
func (c *Config) Env(w io.Writer) {
	c.adopt(false)
	on := "off"
	if c.dataPathOn() {
		on = "on"
	}
	mcs := "off"
	if c.KarmadaMCS {
		mcs = "on"
	}
	var push, pull []string
	for _, m := range c.All() {
		if m.Pull {
			pull = append(pull, m.Name)
		} else {
			push = append(push, m.Name)
		}
	}
	p := func(k, v string) { fmt.Fprintf(w, "%s=%s\n", k, v) }
	p("CMCS_CLUSTERSET_DIR", c.Dir)
	p("CMCS_KARMADA_KUBECONFIG", filepath.Join(c.Dir, "karmada.config"))
	p("CMCS_MEMBERS_KUBECONFIG", filepath.Join(c.Dir, "members.config"))
	p("CMCS_KUBECTL", c.Kubectl())
	p("CMCS_KARMADA_PORT", strconv.Itoa(c.Port(offKarmadaAPIServer)))
	p("CMCS_PUSH_MEMBERS", strings.Join(push, ","))
	p("CMCS_PULL_MEMBER_NAMES", strings.Join(pull, ","))
	for _, m := range c.All() {
		up := strings.ToUpper(m.Name)
		p("CMCS_"+up+"_PORT", strconv.Itoa(m.APIServer))
		p("CMCS_"+up+"_POD_CIDR", m.PodCIDR)
		p("CMCS_"+up+"_SERVICE_CIDR", m.ServiceCIDR)
		p("CMCS_"+up+"_DNS_IP", m.DNSIP)
		p("CMCS_"+up+"_NODE_IP", m.NodeIP)
	}
	p("CMCS_KARMADA_MCS", mcs)
	p("CMCS_MCS_CRDS", c.MCSCRDs)
	p("CMCS_MCS_CRDS_DIR", c.mcsCRDsDir())
	p("CMCS_DATAPATH", on)
	p("CMCS_NETNS", c.NetNS())
	p("CMCS_PODS_DIR", filepath.Join(c.Dir, "pods"))
	p("CMCS_HELM", filepath.Join(c.Cache, "helm-"+c.Versions["HELM_VERSION"], "helm"))
	p("CMCS_STOCK_COREDNS", filepath.Join(c.Cache, "coredns-"+c.Versions["COREDNS_VERSION"], "coredns"))
}

// Stop stops single processes (tests take a member's apiserver away with it); up starts them
// again.
func (c *Config) Stop(names ...string) error {
	unlock, err := c.lock()
	if err != nil {
		return err
	}
	defer unlock()
	c.adopt(false)
	own := c.processes()
	for _, n := range names {
		if !exists(c.pidFile(n)) && !slices.Contains(own, n) {
			return fmt.Errorf("unknown process %s (one of: %s, or a name in %s)", n, strings.Join(own, " "), filepath.Join(c.Dir, "pids"))
		}
		c.stop(n)
	}
	return nil
}

// Start starts again processes stopped with Stop (or that died), as they were started; quicker
// than an up, which brings everything in step.
func (c *Config) Start(names ...string) error {
	unlock, err := c.lock()
	if err != nil {
		return err
	}
	defer unlock()
	for _, n := range names {
		if err := c.restart(n); err != nil {
			return err
		}
	}
	return nil
}

// DNS is ClusterDNS under the lock.
func (c *Config) DNS(member, bin string) error {
	unlock, err := c.lock()
	if err != nil {
		return err
	}
	defer unlock()
	c.adopt(false)
	return c.ClusterDNS(member, bin)
}

// PodNetns prints the network namespace the node agent made for pod ns/name in member.
func (c *Config) PodNetns(member, pod string) (string, error) {
	c.adopt(false)
	ns, name, ok := strings.Cut(pod, "/")
	if !ok {
		return "", fmt.Errorf("pod %q: want NAMESPACE/POD", pod)
	}
	uid, err := c.kubectl(member, "", "-n", ns, "get", "pod", name, "-o", "jsonpath={.metadata.uid}")
	if err != nil {
		return "", err
	}
	b, err := os.ReadFile(filepath.Join(c.Dir, "pods", member, ns+"_"+name+"_"+uid, "netns"))
	if err != nil {
		return "", fmt.Errorf("pod %s in %s has no network namespace (yet): is the data path on and the pod Running?", pod, member)
	}
	return string(b), nil
}
