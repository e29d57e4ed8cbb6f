package lab

import (
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// Bootstrap objects (all applied server-side: idempotent).

func (c *Config) caB64() (string, error) {
	b, err := os.ReadFile(c.pki("ca.crt"))
	return base64.StdEncoding.EncodeToString(b), err
}

func nsYAML(names ...string) string {
	var b strings.Builder
	for _, n := range names {
		fmt.Fprintf(&b, "---\napiVersion: v1\nkind: Namespace\nmetadata: {name: %s}\n", n)
	}
	return b.String()
}

// bootstrapKarmada applies Karmada's CRDs (the MCS ones as CMCS_MCS_CRDS says: Karmada's
// v1alpha1-only copy, which the seed's policies need, or the mcs-api v0.5.2 CRDs), the binding
// CRDs' conversion webhook, the aggregated Cluster API and the webhook configuration, all
// pointed at loopback.
func (c *Config) bootstrapKarmada() error {
	if err := c.apply("karmada", nsYAML("karmada-system", "karmada-cluster")); err != nil {
		return err
	}
	dirs, err := filepath.Glob(filepath.Join(c.karmadaDir(), "crds", "bases", "*"))
	if err != nil {
		return err
	}
	for _, d := range dirs {
		if filepath.Base(d) != "multicluster" {
			if err := c.apply("karmada", "", "-f", d); err != nil {
				return err
			}
		}
	}
	if exists(filepath.Join(c.mcsCRDsDir(), "kustomization.yaml")) {
		err = c.apply("karmada", "", "-k", c.mcsCRDsDir())
	} else {
		err = c.apply("karmada", "", "-f", c.mcsCRDsDir())
	}
	if err != nil {
		return err
	}
	ca, err := c.caB64()
	if err != nil {
		return err
	}
	for _, crd := range []string{"resourcebindings.work.karmada.io", "clusterresourcebindings.work.karmada.io"} {
		if _, err := c.kubectl("karmada", "", "patch", "crd", crd, "--type", "merge", "-p",
			fmt.Sprintf(`{"spec":{"conversion":{"strategy":"Webhook","webhook":{"conversionReviewVersions":["v1"],"clientConfig":{"url":"https://localhost:%d/convert","caBundle":"%s"}}}}}`,
				c.Port(offWebhook), ca)); err != nil {
			return err
		}
	}
	agg := c.Port(offAggregated)
	if err := c.apply("karmada", fmt.Sprintf(`apiVersion: v1
kind: Service
metadata: {name: karmada-aggregated-apiserver, namespace: karmada-system}
spec:
  type: ExternalName
  externalName: localhost
  ports: [{port: %d}]
---
apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata: {name: v1alpha1.cluster.karmada.io}
spec:
  caBundle: %s
  group: cluster.karmada.io
  groupPriorityMinimum: 2000
  service: {name: karmada-aggregated-apiserver, namespace: karmada-system, port: %d}
  version: v1alpha1
  versionPriority: 10
`, agg, ca, agg)); err != nil {
		return err
	}
	hooks, err := os.ReadFile(filepath.Join(c.karmadaDir(), "webhook-configuration.yaml"))
	if err != nil {
		return err
	}
	h := strings.ReplaceAll(string(hooks), "https://karmada-webhook.karmada-system.svc:443", fmt.Sprintf("https://localhost:%d", c.Port(offWebhook)))
	return c.apply("karmada", strings.ReplaceAll(h, "{{caBundle}}", ca))
}

// bootstrapMember writes the member's node (kwok plays it) and, for a Push member, the identity
// Karmada reaches it with (karmadactl join's service account, cluster-admin).
func (c *Config) bootstrapMember(m Member) error {
	y := fmt.Sprintf(`apiVersion: v1
kind: Node
metadata:
  name: %[1]s-control-plane
  annotations: {kwok.x-k8s.io/node: fake}
  labels:
    kubernetes.io/hostname: %[1]s-control-plane
    kubernetes.io/os: linux
    kubernetes.io/arch: amd64
    node-role.kubernetes.io/control-plane: ""
    type: kwok
spec:
  podCIDR: %[2]s
  podCIDRs: [%[2]s]
`, m.Name, m.PodCIDR)
	if m.Pull {
		y += nsYAML("karmada-system")
	} else {
		y += nsYAML("karmada-cluster") + fmt.Sprintf(`---
apiVersion: v1
kind: ServiceAccount
metadata: {name: karmada-%[1]s, namespace: karmada-cluster}
---
apiVersion: v1
kind: Secret
type: kubernetes.io/service-account-token
metadata:
  name: karmada-%[1]s-token
  namespace: karmada-cluster
  annotations: {kubernetes.io/service-account.name: karmada-%[1]s}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: karmada-%[1]s}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}
subjects: [{kind: ServiceAccount, name: karmada-%[1]s, namespace: karmada-cluster}]
`, m.Name)
	}
	return c.apply(m.Name, y)
}

// tokenOf reads the token of a service-account token Secret.
func (c *Config) tokenOf(cluster, ns, secret string) (string, error) {
	out, err := c.kubectl(cluster, "", "-n", ns, "get", "secret", secret, "-o", "jsonpath={.data.token}")
	if err != nil {
		return "", err
	}
	if out == "" {
		return "", errNotYet
	}
	tok, err := base64.StdEncoding.DecodeString(out)
	return string(tok), err
}

// joinPush does what `karmadactl join` does in Push mode: the member's token and CA in
// karmada-cluster, and a Push Cluster pointing at its apiserver.
func (c *Config) joinPush(m Member) error {
	var token string
	if err := c.waitFor("the service-account token of "+m.Name, time.Minute, func() (err error) {
		token, err = c.tokenOf(m.Name, "karmada-cluster", "karmada-"+m.Name+"-token")
		return err
	}); err != nil {
		return err
	}
	id, err := c.kubectl(m.Name, "", "get", "namespace", "kube-system", "-o", "jsonpath={.metadata.uid}")
	if err != nil {
		return err
	}
	ca, err := c.caB64()
	if err != nil {
		return err
	}
	tok := base64.StdEncoding.EncodeToString([]byte(token))
	return c.apply("karmada", fmt.Sprintf(`apiVersion: v1
kind: Secret
metadata: {name: %[1]s, namespace: karmada-cluster}
data: {token: %[2]s, caBundle: %[3]s}
---
apiVersion: v1
kind: Secret
metadata: {name: %[1]s-impersonator, namespace: karmada-cluster}
data: {token: %[2]s}
---
apiVersion: cluster.karmada.io/v1alpha1
kind: Cluster
metadata: {name: %[1]s}
spec:
  id: %[4]s
  syncMode: Push
  apiEndpoint: %[5]s
  secretRef: {namespace: karmada-cluster, name: %[1]s}
  impersonatorSecretRef: {namespace: karmada-cluster, name: %[1]s-impersonator}
`, m.Name, tok, ca, id, c.server(m.Name)))
}

// registerPull prepares what `karmadactl register` leaves for a Pull member: karmada-agent's
// identity on Karmada (a client certificate of group system:karmada:agents; karmadactl issues it
// through a CSR and binds it to its agent ClusterRole — here cluster-admin), its kubeconfig, and
// the mcs-agent's identity (manifests/agent/karmada, in karmada-es-<member>). No Secret of the
// member exists on Karmada: karmada-agent registers the Cluster itself, with --report-secrets None.
func (c *Config) registerPull(m Member) error {
	user, err := c.certUser("karmada-agent-" + m.Name)
	if err != nil {
		return err
	}
	if err := c.writeKubeconfig(c.kubeconfig("karmada-agent-"+m.Name), user, kubeContext{"karmada", "karmada"}); err != nil {
		return err
	}
	es := "karmada-es-" + m.Name
	if err := c.apply("karmada", nsYAML(es)+`---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: system:karmada:agents}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}
subjects: [{kind: Group, apiGroup: rbac.authorization.k8s.io, name: "system:karmada:agents"}]
`); err != nil {
		return err
	}
	// The mcs-agent's identity: the kustomization of manifests/agent/karmada, in its namespace.
	overlay := filepath.Join(c.Dir, "agent-"+m.Name)
	if err := os.MkdirAll(overlay, 0o755); err != nil {
		return err
	}
	rel, err := filepath.Rel(overlay, filepath.Join(c.Root, "manifests", "agent", "karmada"))
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(overlay, "kustomization.yaml"), []byte("namespace: "+es+"\nresources: ["+rel+"]\n"), 0o644); err != nil {
		return err
	}
	if err := c.apply("karmada", "", "-k", overlay); err != nil {
		return err
	}
	var token string
	if err := c.waitFor("the mcs-agent token of "+m.Name, time.Minute, func() (err error) {
		token, err = c.tokenOf("karmada", es, "coredns-mcs-agent-token")
		return err
	}); err != nil {
		return err
	}
	if err := c.writeKubeconfig(c.kubeconfig("mcs-agent-"+m.Name), &clientcmdapi.AuthInfo{Token: token}, kubeContext{"karmada", "karmada"}); err != nil {
		return err
	}
	// Its member side: the RBAC of manifests/agent/member, and a token of its ServiceAccount (it
	// runs as a process here, not as that Deployment).
	rbac, err := os.ReadFile(filepath.Join(c.Root, "manifests", "agent", "member", "rbac.yaml"))
	if err != nil {
		return err
	}
	if err := c.apply(m.Name, string(rbac)+`---
apiVersion: v1
kind: Secret
type: kubernetes.io/service-account-token
metadata:
  name: coredns-mcs-agent-token
  namespace: karmada-system
  annotations: {kubernetes.io/service-account.name: coredns-mcs-agent}
`); err != nil {
		return err
	}
	if err := c.waitFor("the mcs-agent's token in "+m.Name, time.Minute, func() (err error) {
		token, err = c.tokenOf(m.Name, "karmada-system", "coredns-mcs-agent-token")
		return err
	}); err != nil {
		return err
	}
	return c.writeKubeconfig(c.kubeconfig("mcs-agent-member-"+m.Name), &clientcmdapi.AuthInfo{Token: token}, kubeContext{m.Name, m.Name})
}

// clusterReady: Karmada reports the Cluster Ready.
func (c *Config) clusterReady(name string) error {
	out, err := c.kubectl("karmada", "", "get", "cluster", name, "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].status}`)
	if err == nil && out != "True" {
		err = fmt.Errorf("Ready=%q", out)
	}
	return err
}

func (c *Config) nodeReady(m Member) error {
	out, err := c.kubectl(m.Name, "", "get", "node", m.Name+"-control-plane", "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].status}`)
	if err == nil && out != "True" {
		err = fmt.Errorf("Ready=%q", out)
	}
	return err
}
