package multicluster

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/coredns/caddy"
)

// significant drops comments and blank lines.
func significant(s string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		l = strings.TrimRight(l, " \t")
		if t := strings.TrimSpace(l); t == "" || strings.HasPrefix(t, "#") {
			continue
		}
		out = append(out, l)
	}
	return strings.Join(out, "\n")
}

// TestReadmeExample keeps the README's main example equal to corefile.example, and every
// multicluster block in the README parseable.
func TestReadmeExample(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	example, err := os.ReadFile(filepath.Join("..", "..", "corefile.example"))
	if err != nil {
		t.Fatal(err)
	}
	blocks := strings.Split(string(readme), "~~~ corefile\n")[1:]
	if len(blocks) == 0 {
		t.Fatal("no corefile example in README.md")
	}
	first, _, _ := strings.Cut(blocks[0], "~~~")
	if significant(first) != significant(string(example)) {
		t.Errorf("README's first example differs from corefile.example:\n%s\n---\n%s", significant(first), significant(string(example)))
	}
	for _, b := range blocks {
		b, _, _ = strings.Cut(b, "~~~")
		i := strings.Index(b, "multicluster")
		if i < 0 {
			continue
		}
		block := b[i:]
		depth, end := 0, 0
		for j, c := range block {
			if c == '{' {
				depth++
			}
			if c == '}' {
				depth--
				if depth == 0 {
					end = j + 1
					break
				}
			}
		}
		c := caddy.NewTestController("dns", block[:end])
		c.ServerBlockKeys = []string{"clusterset.local.:53"}
		if _, _, err := parse(c); err != nil {
			t.Errorf("README example %q: %v", block[:end], err)
		}
	}
}

// TestCRDCopies checks manifests/crds against the mcs-api module the code is built with.
func TestCRDCopies(t *testing.T) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "sigs.k8s.io/mcs-api").Output()
	if err != nil {
		t.Fatalf("go list sigs.k8s.io/mcs-api: %v", err)
	}
	dir := strings.TrimSpace(string(out))
	for _, f := range []string{"multicluster.x-k8s.io_serviceexports.yaml", "multicluster.x-k8s.io_serviceimports.yaml"} {
		want, err := os.ReadFile(filepath.Join(dir, "config", "crd", f))
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join("..", "..", "manifests", "crds", f))
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(want) {
			t.Errorf("manifests/crds/%s differs from sigs.k8s.io/mcs-api's config/crd/%s", f, f)
		}
	}
}
