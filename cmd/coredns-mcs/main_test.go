package main

import (
	"slices"
	"testing"

	"github.com/coredns/coredns/core/dnsserver"
)

func TestDirectiveOrder(t *testing.T) {
	i := slices.Index(dnsserver.Directives, directive)
	if i < 0 {
		t.Fatalf("%q not in the directive list", directive)
	}
	if dnsserver.Directives[i+1] != anchor {
		t.Fatalf("%q is followed by %q, want %q", directive, dnsserver.Directives[i+1], anchor)
	}
	if n := len(dnsserver.Directives); dnsserver.Directives[n-1] == directive {
		t.Fatalf("%q appended at the end", directive)
	}
}

func TestInsertBefore(t *testing.T) {
	got, err := insertBefore([]string{"a", "kubernetes", "b"}, "kubernetes", "multicluster")
	if err != nil || !slices.Equal(got, []string{"a", "multicluster", "kubernetes", "b"}) {
		t.Fatalf("insertBefore = %v, %v", got, err)
	}
	if _, err := insertBefore([]string{"a", "b"}, "kubernetes", "multicluster"); err == nil {
		t.Fatal("missing anchor: want an error")
	}
	if _, err := insertBefore([]string{"multicluster", "kubernetes"}, "kubernetes", "multicluster"); err == nil {
		t.Fatal("duplicate directive: want an error")
	}
}
