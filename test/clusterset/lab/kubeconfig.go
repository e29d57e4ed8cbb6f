package lab

import (
	"fmt"
	"os"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// kubeContext is one context of a kubeconfig: its name and the cluster (karmada or a member).
type kubeContext struct{ name, cluster string }

// server is the URL of a cluster's apiserver.
func (c *Config) server(cluster string) string {
	if cluster == "karmada" {
		return fmt.Sprintf("https://127.0.0.1:%d", c.Port(offKarmadaAPIServer))
	}
	for _, m := range c.All() {
		if m.Name == cluster {
			return fmt.Sprintf("https://127.0.0.1:%d", m.APIServer)
		}
	}
	return ""
}

// writeKubeconfig writes an admin kubeconfig (client certificate of system:masters, or the user
// given) with one context per entry; the first is current.
func (c *Config) writeKubeconfig(path string, user *clientcmdapi.AuthInfo, contexts ...kubeContext) error {
	ca, err := os.ReadFile(c.pki("ca.crt"))
	if err != nil {
		return err
	}
	if user == nil {
		crt, err := os.ReadFile(c.pki("admin.crt"))
		if err != nil {
			return err
		}
		key, err := os.ReadFile(c.pki("admin.key"))
		if err != nil {
			return err
		}
		user = &clientcmdapi.AuthInfo{ClientCertificateData: crt, ClientKeyData: key}
	}
	cfg := clientcmdapi.NewConfig()
	cfg.AuthInfos["admin"] = user
	for _, kc := range contexts {
		cfg.Clusters[kc.cluster] = &clientcmdapi.Cluster{Server: c.server(kc.cluster), CertificateAuthorityData: ca}
		cfg.Contexts[kc.name] = &clientcmdapi.Context{Cluster: kc.cluster, AuthInfo: "admin"}
	}
	cfg.CurrentContext = contexts[0].name
	tmp := path + ".tmp"
	if err := clientcmd.WriteToFile(*cfg, tmp); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// certUser is a user of a client certificate of the PKI.
func (c *Config) certUser(name string) (*clientcmdapi.AuthInfo, error) {
	crt, err := os.ReadFile(c.pki(name + ".crt"))
	if err != nil {
		return nil, err
	}
	key, err := os.ReadFile(c.pki(name + ".key"))
	if err != nil {
		return nil, err
	}
	return &clientcmdapi.AuthInfo{ClientCertificateData: crt, ClientKeyData: key}, nil
}
