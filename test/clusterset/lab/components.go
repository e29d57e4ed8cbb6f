package lab

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// The components and their flags.

func (c *Config) startEtcd() error {
	data := filepath.Join(c.Dir, "etcd")
	if err := os.MkdirAll(data, 0o700); err != nil {
		return err
	}
	client, peer := fmt.Sprintf("http://127.0.0.1:%d", c.Port(offEtcd)), fmt.Sprintf("http://127.0.0.1:%d", c.Port(offEtcdPeer))
	return c.start("etcd", []int{c.Port(offEtcd), c.Port(offEtcdPeer)}, c.etcdBin(), "--name", "clusterset", "--data-dir", data,
		"--listen-client-urls", client, "--advertise-client-urls", client, "--listen-peer-urls", peer,
		"--initial-advertise-peer-urls", peer, "--initial-cluster", "clusterset="+peer, "--unsafe-no-fsync",
		"--quota-backend-bytes", "4294967296", "--log-level", "warn")
}

// startAPIServer starts the kube-apiserver of cluster (karmada or a member).
func (c *Config) startAPIServer(cluster string, port int, svcCIDR string) error {
	extra := []string{"--authorization-mode", "RBAC"}
	if cluster == "karmada" {
		extra = append(extra, "--disable-admission-plugins", "StorageObjectInUseProtection,ServiceAccount")
	} else {
		extra = append(extra, "--kubelet-preferred-address-types", "InternalDNS,InternalIP,Hostname",
			"--kubelet-client-certificate", c.pki("apiserver-kubelet-client.crt"), "--kubelet-client-key", c.pki("apiserver-kubelet-client.key"))
	}
	return c.start("apiserver-"+cluster, []int{port}, append([]string{filepath.Join(c.kubeDir(), "kube-apiserver"),
		"--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1", "--secure-port", strconv.Itoa(port),
		"--cert-dir", filepath.Join(c.Dir, "apiserver-"+cluster), "--tls-cert-file", c.pki("apiserver-" + cluster + ".crt"),
		"--tls-private-key-file", c.pki("apiserver-" + cluster + ".key"), "--client-ca-file", c.pki("ca.crt"),
		"--etcd-servers", fmt.Sprintf("http://127.0.0.1:%d", c.Port(offEtcd)), "--etcd-prefix", "/registry-" + cluster,
		"--service-cluster-ip-range", svcCIDR, "--endpoint-reconciler-type", "none", "--allow-privileged",
		"--service-account-issuer", "https://kubernetes.default.svc." + cluster, "--service-account-key-file", c.pki("sa.pub"),
		"--service-account-signing-key-file", c.pki("sa.key"),
		"--requestheader-client-ca-file", c.pki("front-proxy-ca.crt"), "--requestheader-allowed-names", "front-proxy-client",
		"--requestheader-extra-headers-prefix", "X-Remote-Extra-", "--requestheader-group-headers", "X-Remote-Group",
		"--requestheader-username-headers", "X-Remote-User",
		"--proxy-client-cert-file", c.pki("front-proxy-client.crt"), "--proxy-client-key-file", c.pki("front-proxy-client.key"),
		"--profiling=false"}, extra...)...)
}

func (c *Config) startKCM(cluster string, port int, controllers, svcCIDR string, extra ...string) error {
	kc := c.kubeconfig(cluster)
	return c.start("kube-controller-manager-"+cluster, []int{port}, append([]string{filepath.Join(c.kubeDir(), "kube-controller-manager"),
		"--kubeconfig", kc, "--authentication-kubeconfig", kc, "--authorization-kubeconfig", kc,
		"--bind-address", "127.0.0.1", "--secure-port", strconv.Itoa(port), "--cert-dir", filepath.Join(c.Dir, "kcm-"+cluster),
		"--leader-elect=false", "--controllers", controllers, "--service-cluster-ip-range", svcCIDR,
		"--service-account-private-key-file", c.pki("sa.key"), "--root-ca-file", c.pki("ca.crt"),
		"--cluster-signing-cert-file", c.pki("ca.crt"), "--cluster-signing-key-file", c.pki("ca.key"),
		"--use-service-account-credentials=false"}, extra...)...)
}

// karmadaControllers: Karmada's built-in MCS controllers are off unless asked for (ours replaces
// them).
func (c *Config) karmadaControllers() string {
	if c.KarmadaMCS {
		return "*"
	}
	return "*,-serviceExport,-endpointSlice,-serviceImport,-multiclusterservice,-endpointsliceCollect,-endpointsliceDispatch"
}

func (c *Config) startKarmada() error {
	kc := c.kubeconfig("karmada")
	if err := os.MkdirAll(filepath.Join(c.Dir, "karmada-aggregated-apiserver"), 0o700); err != nil {
		return err
	}
	if err := c.start("karmada-aggregated-apiserver", []int{c.Port(offAggregated)}, filepath.Join(c.karmadaDir(), "karmada-aggregated-apiserver"),
		"--kubeconfig", kc, "--authentication-kubeconfig", kc, "--authorization-kubeconfig", kc,
		"--etcd-servers", fmt.Sprintf("http://127.0.0.1:%d", c.Port(offEtcd)), "--etcd-prefix", "/registry-karmada",
		"--bind-address", "127.0.0.1", "--secure-port", strconv.Itoa(c.Port(offAggregated)),
		"--cert-dir", filepath.Join(c.Dir, "karmada-aggregated-apiserver"),
		"--tls-cert-file", c.pki("karmada-aggregated-apiserver.crt"), "--tls-private-key-file", c.pki("karmada-aggregated-apiserver.key"),
		"--audit-log-path", "-", "--audit-log-maxage", "0", "--audit-log-maxbackup", "0", "--profiling=false"); err != nil {
		return err
	}
	return c.start("karmada-webhook", []int{c.Port(offWebhook), c.Port(offWebhookHealth), c.Port(offWebhookMetrics)},
		filepath.Join(c.karmadaDir(), "karmada-webhook"), "--kubeconfig", kc, "--bind-address", "127.0.0.1",
		"--secure-port", strconv.Itoa(c.Port(offWebhook)), "--cert-dir", c.pki("webhook"),
		"--health-probe-bind-address", fmt.Sprintf("127.0.0.1:%d", c.Port(offWebhookHealth)),
		"--metrics-bind-address", fmt.Sprintf("127.0.0.1:%d", c.Port(offWebhookMetrics)), "--allow-no-execute-taint-policy=true")
}

// startKarmadaControllers starts karmada-controller-manager and karmada-scheduler, restarting
// them when the controllers or client limits asked for changed (CMCS_KARMADA_MCS,
// CMCS_KARMADA_API_QPS).
func (c *Config) startKarmadaControllers() error {
	want := c.karmadaControllers()
	var limits, schedLimits []string
	if c.KarmadaQPS > 0 {
		q, b := strconv.Itoa(c.KarmadaQPS), strconv.Itoa(2*c.KarmadaQPS)
		limits = []string{"--kube-api-qps", q, "--kube-api-burst", b, "--cluster-api-qps", q, "--cluster-api-burst", b}
		schedLimits = []string{"--kube-api-qps", q, "--kube-api-burst", b}
	}
	stamp := func(file, value string) bool { // whether it changed
		old, _ := os.ReadFile(filepath.Join(c.Dir, file))
		_ = os.WriteFile(filepath.Join(c.Dir, file), []byte(value), 0o644)
		return string(old) != value
	}
	if stamp("karmada-controllers", want+" "+strings.Join(limits, " ")) && c.Running("karmada-controller-manager") {
		c.logf("karmada-controller-manager: switching to --controllers '%s' %s", want, strings.Join(limits, " "))
		c.stop("karmada-controller-manager")
	}
	if stamp("karmada-scheduler-limits", strings.Join(schedLimits, " ")) && c.Running("karmada-scheduler") {
		c.stop("karmada-scheduler")
	}
	kc := c.kubeconfig("karmada")
	if err := c.start("karmada-controller-manager", []int{c.Port(offKarmadaCMMetrics), c.Port(offKarmadaCMHealth)},
		append([]string{filepath.Join(c.karmadaDir(), "karmada-controller-manager"), "--kubeconfig", kc,
			"--cluster-status-update-frequency", "10s", "--controllers", want, "--leader-elect=false",
			"--metrics-bind-address", fmt.Sprintf("127.0.0.1:%d", c.Port(offKarmadaCMMetrics)),
			"--health-probe-bind-address", fmt.Sprintf("127.0.0.1:%d", c.Port(offKarmadaCMHealth))}, limits...)...); err != nil {
		return err
	}
	return c.start("karmada-scheduler", []int{c.Port(offKarmadaSchedMetric), c.Port(offKarmadaSchedHealth)},
		append([]string{filepath.Join(c.karmadaDir(), "karmada-scheduler"), "--kubeconfig", kc, "--leader-elect=false",
			"--enable-scheduler-estimator=false",
			"--metrics-bind-address", fmt.Sprintf("127.0.0.1:%d", c.Port(offKarmadaSchedMetric)),
			"--health-probe-bind-address", fmt.Sprintf("127.0.0.1:%d", c.Port(offKarmadaSchedHealth))}, schedLimits...)...)
}

// kwokConfig is a KwokConfiguration followed by the stages kwok needs, for member m.
func (c *Config) kwokConfig(m Member) (string, error) {
	nodePort := m.Kwok
	if c.dataPathOn() {
		nodePort = m.NodeAgent
	}
	var b strings.Builder
	fmt.Fprintf(&b, `apiVersion: config.kwok.x-k8s.io/v1alpha1
kind: KwokConfiguration
options:
  cidr: %s
  nodeIP: %s
  manageAllNodes: false
  manageNodesWithAnnotationSelector: kwok.x-k8s.io/node=fake
  serverAddress: 127.0.0.1:%d
  nodePort: %d
  tlsCertFile: %s
  tlsPrivateKeyFile: %s
  enableCRDs: [Logs]
  enableDebuggingHandlers: true
  enableContentionProfiling: false
  enableProfilingHandler: false
  podPlayStageParallelism: 8
  nodePlayStageParallelism: 4
  nodeLeaseDurationSeconds: 40
  nodeLeaseParallelism: 4
  podsOnNodeSyncParallelism: 2
  enablePodsOnNodeSyncListPager: true
  enablePodsOnNodeSyncStreamWatch: false
`, m.PodCIDR, m.NodeIP, m.Kwok, nodePort, c.pki("kwok.crt"), c.pki("kwok.key"))
	stage := filepath.Join(c.kwokDir(), "stage")
	// The node's kubelet (kwok's server, which serves `kubectl logs` from the Logs objects the
	// node agent writes) is reached by the member's apiserver at the node's InternalDNS name,
	// localhost: the InternalIP lives in the node's network namespace, which the host cannot
	// reach. The stage always writes the whole address list: kwok's own template writes an empty
	// one when it re-initializes a node that lost Ready and has no Hostname address, and
	// `kubectl logs` then fails with "no preferred addresses found".
	init, err := os.ReadFile(filepath.Join(stage, "node", "fast", "node-initialize.yaml"))
	if err != nil {
		return "", err
	}
	b.WriteString("---\n")
	skip := false
	for _, line := range strings.Split(strings.TrimRight(string(init), "\n"), "\n") {
		switch {
		case strings.HasPrefix(line, "---"):
			continue
		case strings.Contains(line, "{{ $hasInternalIP := false }}"):
			skip = true
			fmt.Fprintf(&b, "      addresses:\n      - address: %q\n        type: InternalIP\n      - address: localhost\n        type: InternalDNS\n      - address: %q\n        type: Hostname\n",
				m.NodeIP, m.Name+"-control-plane")
			continue
		case skip && strings.Contains(line, "{{ with NodePort }}"):
			skip = false
		}
		if !skip {
			b.WriteString(line + "\n")
		}
	}
	for _, f := range []string{"node/heartbeat-with-lease/node-heartbeat-with-lease.yaml", "pod/fast/pod-ready.yaml",
		"pod/fast/pod-complete.yaml", "pod/fast/pod-delete.yaml"} {
		raw, err := os.ReadFile(filepath.Join(stage, f))
		if err != nil {
			return "", err
		}
		b.WriteString("---\n")
		b.WriteString(docSep.ReplaceAllString(string(raw), ""))
		if !strings.HasSuffix(b.String(), "\n") {
			b.WriteString("\n")
		}
	}
	return b.String(), nil
}

var docSep = regexp.MustCompile(`(?m)^---.*\n`)

// startMember starts a member's kube-controller-manager, kube-scheduler and kwok.
func (c *Config) startMember(m Member) error {
	if err := c.startKCM(m.Name, m.KCM, "*", m.ServiceCIDR, "--cluster-cidr", m.PodCIDR, "--allocate-node-cidrs=false",
		"--node-monitor-grace-period", "40s"); err != nil {
		return err
	}
	kc := c.kubeconfig(m.Name)
	if err := c.start("kube-scheduler-"+m.Name, []int{m.Scheduler}, filepath.Join(c.kubeDir(), "kube-scheduler"),
		"--kubeconfig", kc, "--authentication-kubeconfig", kc, "--authorization-kubeconfig", kc,
		"--bind-address", "127.0.0.1", "--secure-port", strconv.Itoa(m.Scheduler), "--leader-elect=false"); err != nil {
		return err
	}
	cfg, err := c.kwokConfig(m)
	if err != nil {
		return err
	}
	cfgFile := filepath.Join(c.Dir, "kwok-"+m.Name+".yaml")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o644); err != nil {
		return err
	}
	if err := c.apply(m.Name, "", "-f", filepath.Join(c.kwokDir(), "crds")); err != nil {
		return err
	}
	if err := c.waitFor("kwok's Logs CRD in "+m.Name, 30e9, func() error {
		_, err := c.kubectl(m.Name, "", "get", "logs.kwok.x-k8s.io", "-A")
		return err
	}); err != nil {
		return err
	}
	return c.start("kwok-"+m.Name, []int{m.Kwok}, filepath.Join(c.kwokDir(), "kwok"), "--kubeconfig", kc, "--config", cfgFile)
}

// startKarmadaAgent runs karmada-agent for Pull member m, as `karmadactl register` deploys it:
// it registers the Cluster itself (syncMode Pull) and reports no Secret of the member.
func (c *Config) startKarmadaAgent(m Member) error {
	controllers := "*"
	if !c.KarmadaMCS {
		controllers = "*,-serviceExport,-endpointsliceCollect"
	}
	stamp := filepath.Join(c.Dir, "karmada-agent-"+m.Name+"-controllers")
	if old, _ := os.ReadFile(stamp); string(old) != controllers && c.Running("karmada-agent-"+m.Name) {
		c.stop("karmada-agent-" + m.Name)
	}
	if err := os.WriteFile(stamp, []byte(controllers), 0o644); err != nil {
		return err
	}
	return c.start("karmada-agent-"+m.Name, []int{m.KarmadaAgentMetrics, m.KarmadaAgentHealth}, filepath.Join(c.karmadaDir(), "karmada-agent"),
		"--kubeconfig", c.kubeconfig(m.Name), "--karmada-kubeconfig", c.kubeconfig("karmada-agent-"+m.Name),
		"--cluster-name", m.Name, "--cluster-api-endpoint", c.server(m.Name), "--report-secrets", "None",
		"--controllers", controllers, "--leader-elect=false", "--cluster-status-update-frequency", "10s",
		"--metrics-bind-address", fmt.Sprintf("127.0.0.1:%d", m.KarmadaAgentMetrics),
		"--health-probe-bind-address", fmt.Sprintf("127.0.0.1:%d", m.KarmadaAgentHealth))
}

// StartMCSAgent runs the project's mcs-agent for Pull member m with the identities of
// manifests/agent: on Karmada its ServiceAccount in karmada-es-<member>, in the member its
// ServiceAccount in karmada-system (tokens of both).
func (c *Config) StartMCSAgent(m Member) error {
	return c.start("mcs-agent-"+m.Name, []int{m.MCSAgentMetrics, m.MCSAgentHealth}, c.bin("mcs-agent"),
		"--kubeconfig", c.kubeconfig("mcs-agent-member-"+m.Name), "--karmada-kubeconfig", c.kubeconfig("mcs-agent-"+m.Name),
		"--cluster-name", m.Name, "--cluster-interval", "2s", "--lease-duration", "8s",
		// Leader election on, as deployed, with a lease below the report's.
		"--leader-elect-lease-duration", "4s", "--leader-elect-renew-deadline", "3s", "--leader-elect-retry-period", "1s",
		"--metrics-bind-address", fmt.Sprintf("127.0.0.1:%d", m.MCSAgentMetrics),
		"--health-probe-bind-address", fmt.Sprintf("127.0.0.1:%d", m.MCSAgentHealth))
}
