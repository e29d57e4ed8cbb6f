package controller

import (
	"context"
	"strings"
	"time"
)

// reconcile brings one service (namespace/name) in line: observe it from the caches, compute the
// desired Works, apply the difference through Karmada, and write the ServiceExport and
// ServiceImport status (handed to the status writers). It is level-triggered: it never depends on which event woke it. It
// returns when to look again (0: on the next event).
func (c *Controller) reconcile(ctx context.Context, key string) (time.Duration, error) {
	ns, name, _ := strings.Cut(key, "/")
	// Nothing is decided before the caches of the Karmada control plane are complete; members
	// whose caches are not (unknown) hold back only what depends on them.
	if !c.importTemplates.synced() || !c.exportTemplates.synced() || !c.declared.ready() {
		return time.Second, nil
	}
	members, unknown := c.fleet()

	o := c.observe(ctx, ns, name, members)
	o.unknown = unknown
	if o.autoWait > 0 {
		c.enqueueAfter(key, o.autoWait)
	}
	if o.declaredWait > 0 {
		c.enqueueAfter(key, o.declaredWait)
	}
	desired, err := desiredWorks(ns, name, c.opts.DerivedPrefix, o.exporters, o.importers)
	if err != nil {
		return 0, err
	}
	if len(o.exporters) == 0 && (len(o.states) > 0 || len(o.drained) > 0) {
		// Still exported, but no export is valid now (its Service was deleted, say): importers
		// keep the derived Service they already have, so its ClusterIP survives while the
		// import lives, with no endpoints. An export that never was valid gets nothing.
		desired = append(desired, c.keptServiceWorks(ns, name, o.importers)...)
	}
	if c.opts.WorkLayout == WorkLayoutBundle {
		if desired, err = c.bundle(o, desired); err != nil {
			return 0, err
		}
	}
	if err := c.adoptOrphans(ctx, ns, name, members, desired, o.derivedIn); err != nil {
		return 0, err
	}
	applied, err := c.applyWorks(ctx, ns, name, desired, c.heldBy(o))
	if err != nil {
		return 0, err
	}

	pending := pendingClusters(o, desired, applied)
	c.propagation.note(key, workClusters(desired), pending, time.Now())
	perMember, template := exportConditions(o, pending)
	// Status is written off the workers (statusWriter): a member that hangs a write holds
	// nothing here.
	c.writeExportStatuses(o, perMember, template)
	c.writeImportStatuses(o, pending)
	if len(pending) > 0 {
		return 2 * time.Second, nil // Work status events requeue sooner; this is a safety net
	}
	return 0, nil
}
