package controller

import (
	"fmt"
	"slices"
	"strings"

	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"
)

// The conditions, computed from an observation and what was applied; writing them is
// statuswrite.go's.

func condition(t mcsv1beta1.ServiceExportConditionType, s metav1.ConditionStatus, r mcsv1beta1.ServiceExportConditionReason, msg string) metav1.Condition {
	return metav1.Condition{Type: string(t), Status: s, Reason: string(r), Message: msg}
}

// ReasonDerivedServiceTaken is the Ready reason of an export that cannot be imported somewhere
// because the derived Service's name is taken there.
const ReasonDerivedServiceTaken mcsv1beta1.ServiceExportConditionReason = "DerivedServiceTaken"

// ReasonIPFamilyNotSupported is the Ready reason of an export that some importer cannot import:
// it serves none of the export's IP families (the import's Ready has mcs-api's reason of that
// name).
const ReasonIPFamilyNotSupported = mcsv1beta1.ServiceExportConditionReason(mcsv1beta1.ServiceImportReasonIPFamilyNotSupported)

// pendingClusters are the importers still waiting for Karmada: a desired Work not applied yet,
// or an automatic import whose ServiceImport waits for the derived Service's ClusterIP.
func pendingClusters(o *observation, desired []workObject, applied map[string]bool) []string {
	var pending []string
	for _, w := range desired {
		if !applied[w.namespace+"/"+w.name] {
			pending = append(pending, w.cluster)
		}
	}
	if len(o.exporters) > 0 {
		has := map[string]bool{}
		for _, w := range desired {
			if w.name == workName("si", o.ns, o.name, "") {
				has[w.cluster] = true
			}
		}
		for _, im := range o.importers {
			if im.auto && !im.taken && !im.noFamily && !has[im.cluster] {
				pending = append(pending, im.cluster)
			}
		}
	}
	return uniqueSorted(pending)
}

// exportConditions are the conditions of every member's ServiceExport (by cluster) and their
// merge for the ServiceExport template on the Karmada control plane.
func exportConditions(o *observation, pending []string) (map[string][]metav1.Condition, []metav1.Condition) {
	ready := exportReady(o, pending)
	conflict := conflictCondition(o.exporters)
	perMember := map[string][]metav1.Condition{}
	var template []metav1.Condition
	for _, st := range o.states {
		conds := []metav1.Condition{st.valid}
		if st.exported {
			conds = append(conds, ready, conflict)
		} else {
			conds = append(conds, condition(mcsv1beta1.ServiceExportConditionReady, metav1.ConditionFalse, mcsv1beta1.ServiceExportReasonFailed,
				"not exported: "+st.valid.Message))
		}
		perMember[st.m.name] = conds
		template = mergeTemplate(template, st.m.name, conds)
	}
	return perMember, template
}

// exportReady: every desired Work applied in its member.
func exportReady(o *observation, pending []string) metav1.Condition {
	cond := exportReadyOf(o, pending)
	if len(o.heldFor) > 0 {
		cond.Message += "; " + strings.Join(o.heldFor, ", ") +
			" not synced (not joined yet, no working credentials, or unreachable): what they export and import is held as it was"
	}
	return cond
}

func exportReadyOf(o *observation, pending []string) metav1.Condition {
	what := "derived Service and EndpointSlices"
	if o.auto {
		what = "derived Service, EndpointSlices and ServiceImport"
	}
	switch {
	case len(o.taken) > 0:
		return condition(mcsv1beta1.ServiceExportConditionReady, metav1.ConditionFalse, ReasonDerivedServiceTaken,
			fmt.Sprintf("not imported in %s: a Service %s exists there that the controller did not write; it is left alone (delete or rename it to import there)",
				strings.Join(o.taken, ", "), strings.Join(uniqueSorted(o.takenNames), ", ")))
	case len(o.noFamily) > 0:
		return condition(mcsv1beta1.ServiceExportConditionReady, metav1.ConditionFalse, ReasonIPFamilyNotSupported,
			fmt.Sprintf("not imported in %s: no Service CIDR there of the export's IP families (%s)",
				strings.Join(o.noFamily, ", "), showFamilies(o.exporters[0].service.Spec.IPFamilies)))
	case len(o.importers) == 0:
		return condition(mcsv1beta1.ServiceExportConditionReady, metav1.ConditionTrue, mcsv1beta1.ServiceExportReasonExported,
			"exported; no cluster imports it yet")
	case len(pending) == 0:
		names := make([]string, 0, len(o.importers))
		for _, im := range o.importers {
			names = append(names, im.cluster)
		}
		return condition(mcsv1beta1.ServiceExportConditionReady, metav1.ConditionTrue, mcsv1beta1.ServiceExportReasonExported,
			what+" applied in "+strings.Join(names, ", "))
	}
	return condition(mcsv1beta1.ServiceExportConditionReady, metav1.ConditionFalse, mcsv1beta1.ServiceExportReasonPending,
		"waiting for Karmada to apply the "+what+" in "+strings.Join(pending, ", "))
}

// conflictCondition (KEP-1645): on every export of the service, naming who disagrees with the
// oldest.
func conflictCondition(exporters []exporter) metav1.Condition {
	cf := conflicts(exporters)
	if len(cf) == 0 {
		return condition(mcsv1beta1.ServiceExportConditionConflict, metav1.ConditionFalse, mcsv1beta1.ServiceExportReasonNoConflicts,
			"no conflicting exports")
	}
	msgs := make([]string, 0, len(cf))
	var reasons []string
	for _, x := range cf {
		msgs = append(msgs, x.message)
		if !slices.Contains(reasons, x.reason) {
			reasons = append(reasons, x.reason)
		}
	}
	// mcs-api: "When multiple conflicts occur the above reasons may be combined using commas."
	return condition(mcsv1beta1.ServiceExportConditionConflict, metav1.ConditionTrue, mcsv1beta1.ServiceExportConditionReason(strings.Join(reasons, ",")),
		strings.Join(msgs, "; "))
}

// mergeTemplate folds one member's conditions into the Karmada template's: a condition is True
// only if it is True in every exporting member; messages name the member.
func mergeTemplate(acc []metav1.Condition, cluster string, conds []metav1.Condition) []metav1.Condition {
	for _, c := range conds {
		c.Message = cluster + ": " + c.Message
		found := false
		for i := range acc {
			if acc[i].Type != c.Type {
				continue
			}
			found = true
			if c.Status != metav1.ConditionTrue && acc[i].Status == metav1.ConditionTrue {
				acc[i] = c
			} else if c.Status == acc[i].Status {
				acc[i].Message += "; " + c.Message
			}
		}
		if !found {
			acc = append(acc, c)
		}
	}
	return acc
}

// importClusters are the cluster ids a ServiceImport's status.clusters lists: the valid exporters.
func importClusters(exporters []exporter) []string {
	var clusters []string
	for _, ex := range exporters {
		clusters = append(clusters, ex.clusterID)
	}
	slices.Sort(clusters)
	return clusters
}

// importReady is the Ready condition of the ServiceImport of o in cluster.
func importReady(o *observation, cluster string, pending []string) metav1.Condition {
	key, exporters, states, drained := o.ns+"/"+o.name, o.exporters, o.states, o.drained
	notReady := func(msg string) metav1.Condition {
		return metav1.Condition{Type: string(mcsv1beta1.ServiceImportConditionReady), Status: metav1.ConditionFalse,
			Reason: string(mcsv1beta1.ServiceImportReasonPending), Message: msg}
	}
	if slices.Contains(o.taken, cluster) {
		return notReady("not imported here: the Service " + o.derivedIn(cluster) + " exists in " + cluster +
			" and the controller did not write it; it is left alone (delete or rename it to import)")
	}
	if slices.Contains(o.noFamily, cluster) && len(exporters) > 0 {
		return metav1.Condition{Type: string(mcsv1beta1.ServiceImportConditionReady), Status: metav1.ConditionFalse,
			Reason: string(mcsv1beta1.ServiceImportReasonIPFamilyNotSupported),
			Message: "not imported here: " + cluster + " has no Service CIDR of the export's IP families (" +
				showFamilies(exporters[0].service.Spec.IPFamilies) + ")"}
	}
	withdrawn := ""
	if len(drained) > 0 {
		withdrawn = fmt.Sprintf("the endpoints of %s are withdrawn: not Ready in Karmada past the member failure grace (policy drain)",
			strings.Join(drained, ", "))
	}
	switch {
	case len(exporters) == 0 && len(drained) > 0:
		return notReady("no endpoints: " + withdrawn)
	case len(exporters) == 0 && len(states) > 0:
		var why []string
		for _, st := range states {
			why = append(why, st.m.name+": "+st.valid.Message)
		}
		return notReady("no endpoints: no export of " + key + " is valid (" + strings.Join(why, "; ") + ")")
	case len(exporters) == 0:
		return notReady("no endpoints: no cluster exports " + key)
	case slices.Contains(pending, cluster):
		return notReady("waiting for Karmada to apply the derived Service and EndpointSlices in " + cluster)
	}
	names := make([]string, 0, len(exporters))
	readyEndpoints := 0
	for _, ex := range exporters {
		names = append(names, ex.clusterID)
		for _, s := range ex.slices {
			for _, e := range s.Endpoints {
				if ready(e) {
					readyEndpoints++
				}
			}
		}
	}
	msg := "imported from " + strings.Join(names, ", ")
	if readyEndpoints == 0 {
		msg += "; no endpoint is ready there"
	}
	if withdrawn != "" {
		msg += "; " + withdrawn
	}
	return metav1.Condition{Type: string(mcsv1beta1.ServiceImportConditionReady), Status: metav1.ConditionTrue,
		Reason: string(mcsv1beta1.ServiceImportReasonReady), Message: msg}
}

func ready(e discoveryv1.Endpoint) bool {
	return e.Conditions.Ready == nil || *e.Conditions.Ready
}

func uniqueSorted(s []string) []string {
	slices.Sort(s)
	return slices.Compact(s)
}
