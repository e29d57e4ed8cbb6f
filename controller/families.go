package controller

import (
	"context"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/klog/v2"

	"github.com/coredns-mcs/coredns-mcs/internal/mcs"
)

// IP families (mcs-api v0.5.2: a ServiceImport is Ready=False/IPFamilyNotSupported where the
// importer can serve none of the export's families). A member's families are those of its
// ServiceCIDRs (networking.k8s.io/v1, Kubernetes ≥ 1.33), read with its cluster id; a member that
// does not serve them has unknown families, and imports as before (the export's primary family).

// readFamilies returns the IP families of the member's ServiceCIDRs; ok is false when they could
// not be read (the previous ones then stay), and families nil when the API is not served.
func (m *member) readFamilies(ctx context.Context) (families []corev1.IPFamily, ok bool) {
	families, err := mcs.ReadFamilies(ctx, m.kube)
	if err != nil {
		klog.FromContext(ctx).V(2).Info("listing ServiceCIDRs; keeping the IP families", "cluster", m.name, "err", err)
		return nil, false
	}
	return families, true
}

// followFamilies re-reads the member's IP families; onChange runs when they changed.
func (m *member) followFamilies(ctx context.Context, onChange func()) {
	families, ok := m.readFamilies(ctx)
	if !ok {
		return
	}
	m.mu.Lock()
	old := m.families
	m.families = families
	m.mu.Unlock()
	if !slices.Equal(old, families) {
		klog.FromContext(ctx).Info("IP families of the member's Service CIDRs", "cluster", m.name, "families", families)
		onChange()
	}
}

// ipFamilies returns the member's IP families (nil: unknown).
func (m *member) ipFamilies() []corev1.IPFamily {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.families
}

// importFamilies are the IP families an importer serving have gives an export of want (the
// oldest export's ipFamilies, primary first), in the export's order; nil when either is unknown
// (no restriction), empty when they share none.
func importFamilies(want, have []corev1.IPFamily) []corev1.IPFamily {
	if len(want) == 0 || len(have) == 0 {
		return nil
	}
	out := []corev1.IPFamily{}
	for _, f := range want {
		if slices.Contains(have, f) {
			out = append(out, f)
		}
	}
	return out
}

// findFamilies gives each importer the families it imports the service with, and marks those
// that can import none.
func (c *Controller) findFamilies(o *observation) {
	if len(o.exporters) == 0 {
		return
	}
	want := o.exporters[0].service.Spec.IPFamilies
	byName := map[string]*member{}
	for _, m := range o.members {
		byName[m.name] = m
	}
	for i := range o.importers {
		im := &o.importers[i]
		m := byName[im.cluster]
		if m == nil || im.taken {
			continue
		}
		im.served = m.ipFamilies()
		im.families = importFamilies(want, im.served)
		if im.families != nil && len(im.families) == 0 {
			im.noFamily = true
			o.noFamily = append(o.noFamily, im.cluster)
		}
	}
}

// showFamilies renders families for a message.
func showFamilies(fs []corev1.IPFamily) string {
	if len(fs) == 0 {
		return "none"
	}
	s := make([]string, len(fs))
	for i, f := range fs {
		s[i] = string(f)
	}
	return strings.Join(s, ", ")
}

// sliceFamilyServed reports whether an importer with families (nil: unknown) takes slices of
// addressType: an IPv6 slice is of no use to an IPv4-only importer (nor IPv4 to IPv6-only), and
// its DNS would answer addresses nothing there can reach. FQDN slices always pass.
func sliceFamilyServed(addressType discoveryv1.AddressType, families []corev1.IPFamily) bool {
	switch {
	case families == nil:
		return true
	case addressType == discoveryv1.AddressTypeIPv4:
		return slices.Contains(families, corev1.IPv4Protocol)
	case addressType == discoveryv1.AddressTypeIPv6:
		return slices.Contains(families, corev1.IPv6Protocol)
	}
	return true
}
