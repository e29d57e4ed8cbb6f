package controller

import (
	"strings"
	"testing"
)

func TestValidClusterID(t *testing.T) {
	for id, ok := range map[string]bool{
		"member1": true, "eu.member1": true, "a": true,
		"": false, "Member1": false, "a.b.c": false, "-x": false, "x_y": false,
		strings.Repeat("a", 63): true, strings.Repeat("a", 64): false,
		strings.Repeat("a", 63) + "." + strings.Repeat("b", 63): true,
	} {
		if err := validClusterID(id); (err == nil) != ok {
			t.Errorf("validClusterID(%q) = %v, want valid=%v", id, err, ok)
		}
	}
}
