package version

import (
	"strings"
	"testing"
)

func TestStamped(t *testing.T) {
	old := Version
	defer func() { Version = old }()
	Version = "v1.2.3-4-gabcdef"
	if got := String("mcs-controller"); !strings.HasPrefix(got, "mcs-controller v1.2.3-4-gabcdef (go") {
		t.Errorf("String = %q", got)
	}
}

func TestUnstamped(t *testing.T) {
	old := Version
	defer func() { Version = old }()
	Version = ""
	if got := Get(); got == "" {
		t.Error("Get() is empty without a stamp; want the build's revision or dev")
	}
}
