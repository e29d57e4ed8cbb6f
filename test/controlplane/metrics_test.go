//go:build envtest

package controlplane_test

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coredns-mcs/coredns-mcs/controller"
)

// The metrics endpoint as cmd/mcs-controller serves it by default: HTTPS, and each request
// authenticated and authorized by the Karmada apiserver. No token: 401; an unknown one: refused;
// a token of a user who may not get /metrics: 403; an allowed one: the metrics.
func TestMetricsSecureByDefault(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	runControllerWith(t, controller.Options{}, controller.MetricsOptions(addr, true, t.TempDir()))
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	get := func(token string) (int, string, error) {
		req, _ := http.NewRequest(http.MethodGet, "https://"+addr+"/metrics", nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := client.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		var b strings.Builder
		buf := make([]byte, 64<<10)
		for {
			n, err := resp.Body.Read(buf)
			b.Write(buf[:n])
			if err != nil {
				break
			}
		}
		return resp.StatusCode, b.String(), nil
	}
	eventually(t, 30*time.Second, "the metrics endpoint answers an allowed token", func() error {
		code, body, err := get(memberToken)
		if err != nil {
			return err
		}
		if code != http.StatusOK || !strings.Contains(body, "controller_runtime_reconcile_total") {
			return fmt.Errorf("HTTP %d", code)
		}
		return nil
	})
	for token, want := range map[string]int{"": http.StatusUnauthorized, nobodyToken: http.StatusForbidden} {
		code, body, err := get(token)
		if err != nil || code != want {
			t.Errorf("token %q: HTTP %d %q (%v), want %d", token, code, body, err, want)
		}
	}
	// A token the apiserver does not know: refused (controller-runtime's filter answers 500
	// "Authentication failed" when the TokenReview says "invalid bearer token").
	if code, body, err := get("not-a-token"); err != nil || code == http.StatusOK || strings.Contains(body, "controller_runtime") {
		t.Errorf("unknown token: HTTP %d (%v), want a refusal", code, err)
	}
	// Plain HTTP is not served there.
	if resp, err := (&http.Client{Timeout: 2 * time.Second}).Get("http://" + addr + "/metrics"); err == nil {
		if resp.StatusCode == http.StatusOK {
			t.Error("plain HTTP answered the metrics")
		}
		resp.Body.Close()
	}
}
