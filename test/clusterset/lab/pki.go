package lab

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// The PKI: one CA for serving and client certificates, a front-proxy CA, and the service-account
// key pair, all made once (files that exist are kept).

type signer struct {
	cert *x509.Certificate
	key  crypto.Signer
}

func writePEM(path, typ string, der []byte) error {
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600)
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func serial() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 126))
}

func newKey() (*ecdsa.PrivateKey, []byte, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	return k, der, err
}

// ca makes (or loads) the CA of that name.
func (c *Config) ca(name string) (*signer, error) {
	crt, key := c.pki(name+".crt"), c.pki(name+".key")
	if !exists(crt) {
		k, der, err := newKey()
		if err != nil {
			return nil, err
		}
		sn, err := serial()
		if err != nil {
			return nil, err
		}
		tmpl := &x509.Certificate{SerialNumber: sn, Subject: pkix.Name{CommonName: "coredns-mcs-local-" + name},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().AddDate(10, 0, 0),
			IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature}
		cert, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
		if err != nil {
			return nil, err
		}
		if err := writePEM(key, "PRIVATE KEY", der); err != nil {
			return nil, err
		}
		if err := writePEM(crt, "CERTIFICATE", cert); err != nil {
			return nil, err
		}
	}
	return loadSigner(crt, key)
}

func loadSigner(crtPath, keyPath string) (*signer, error) {
	crtPEM, err := os.ReadFile(crtPath)
	if err != nil {
		return nil, err
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, err
	}
	cb, _ := pem.Decode(crtPEM)
	kb, _ := pem.Decode(keyPEM)
	if cb == nil || kb == nil {
		return nil, fmt.Errorf("%s or %s: no PEM block", crtPath, keyPath)
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, err
	}
	var key any
	switch kb.Type {
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(kb.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(kb.Bytes)
	default:
		key, err = x509.ParsePKCS8PrivateKey(kb.Bytes)
	}
	if err != nil {
		return nil, err
	}
	s, ok := key.(crypto.Signer)
	if !ok {
		return nil, errors.New(keyPath + ": not a signing key")
	}
	return &signer{cert: cert, key: s}, nil
}

// certSpec is one leaf certificate.
type certSpec struct {
	name, cn string
	org      []string
	dns      []string
	ips      []string
	server   bool
	ca       *signer
}

func (c *Config) leaf(s certSpec) error {
	crt, key := c.pki(s.name+".crt"), c.pki(s.name+".key")
	if exists(crt) {
		return nil
	}
	k, der, err := newKey()
	if err != nil {
		return err
	}
	sn, err := serial()
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{SerialNumber: sn, Subject: pkix.Name{CommonName: s.cn, Organization: s.org},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().AddDate(10, 0, 0),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment, BasicConstraintsValid: true,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, DNSNames: s.dns}
	if s.server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	}
	for _, ip := range s.ips {
		tmpl.IPAddresses = append(tmpl.IPAddresses, net.ParseIP(ip))
	}
	cert, err := x509.CreateCertificate(rand.Reader, tmpl, s.ca.cert, &k.PublicKey, s.ca.key)
	if err != nil {
		return err
	}
	if err := writePEM(key, "PRIVATE KEY", der); err != nil {
		return err
	}
	return writePEM(crt, "CERTIFICATE", cert)
}

// makePKI makes every certificate the clusterset uses.
func (c *Config) makePKI() error {
	if err := os.MkdirAll(c.pki("webhook"), 0o700); err != nil {
		return err
	}
	ca, err := c.ca("ca")
	if err != nil {
		return err
	}
	fp, err := c.ca("front-proxy-ca")
	if err != nil {
		return err
	}
	if !exists(c.pki("sa.key")) {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			return err
		}
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			return err
		}
		pub, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
		if err != nil {
			return err
		}
		if err := writePEM(c.pki("sa.pub"), "PUBLIC KEY", pub); err != nil {
			return err
		}
		if err := writePEM(c.pki("sa.key"), "PRIVATE KEY", der); err != nil {
			return err
		}
	}
	apiserverDNS := []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"}
	specs := []certSpec{
		{name: "apiserver-karmada", cn: "kube-apiserver-karmada", dns: apiserverDNS, ips: []string{"127.0.0.1", firstIP(KarmadaServiceCIDR)}, server: true},
		{name: "admin", cn: "admin", org: []string{"system:masters"}},
		{name: "front-proxy-client", cn: "front-proxy-client", ca: fp},
		{name: "karmada-aggregated-apiserver", cn: "karmada-aggregated-apiserver",
			dns: []string{"karmada-aggregated-apiserver.karmada-system.svc", "localhost"}, ips: []string{"127.0.0.1"}, server: true},
		{name: "karmada-webhook", cn: "karmada-webhook", dns: []string{"localhost"}, ips: []string{"127.0.0.1"}, server: true},
		{name: "kwok", cn: "kwok", dns: []string{"localhost"}, ips: []string{"127.0.0.1"}, server: true},
		{name: "apiserver-kubelet-client", cn: "kube-apiserver-kubelet-client"},
	}
	for _, m := range c.All() {
		specs = append(specs, certSpec{name: "apiserver-" + m.Name, cn: "kube-apiserver-" + m.Name, dns: apiserverDNS,
			ips: []string{"127.0.0.1", firstIP(m.ServiceCIDR)}, server: true})
		if m.Pull {
			// karmada-agent's identity on Karmada (karmadactl register issues one through a CSR).
			specs = append(specs, certSpec{name: "karmada-agent-" + m.Name, cn: "system:karmada:agent:" + m.Name, org: []string{"system:karmada:agents"}})
		}
	}
	for _, s := range specs {
		if s.ca == nil {
			s.ca = ca
		}
		if err := c.leaf(s); err != nil {
			return fmt.Errorf("certificate %s: %w", s.name, err)
		}
	}
	for src, dst := range map[string]string{"karmada-webhook.crt": "tls.crt", "karmada-webhook.key": "tls.key"} {
		b, err := os.ReadFile(c.pki(src))
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(c.pki("webhook"), dst), b, 0o600); err != nil {
			return err
		}
	}
	return nil
}
