package mcsctl

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	"github.com/coredns-mcs/coredns-mcs/internal/mcs"
)

// staleAfter: a fleet status older than this says the controller is not publishing it.
const staleAfter = 2 * time.Minute

// memberData is what one member holds of the MCS API.
type memberData struct {
	m       *Member
	err     error
	exports map[string]*mcsv1beta1.ServiceExport
	imports map[string]*mcsv1beta1.ServiceImport
}

func (f *Fleet) collect(ctx context.Context, names []string, ns string) map[string]*memberData {
	out := map[string]*memberData{}
	for _, name := range names {
		d := &memberData{}
		out[name] = d
		if d.m, d.err = f.Member(name); d.err != nil {
			continue
		}
		if d.exports, d.err = d.m.Exports(ctx, ns); d.err != nil {
			continue
		}
		d.imports, d.err = d.m.Imports(ctx, ns)
	}
	return out
}

// Status writes the fleet's state: the controller, the members, every exported service.
func Status(ctx context.Context, f *Fleet, w io.Writer) error {
	clusters, err := f.Clusters(ctx)
	if err != nil {
		return fmt.Errorf("listing Karmada's clusters: %w", err)
	}
	st, err := f.ControllerStatus(ctx)
	if err != nil {
		return err
	}
	byName := map[string]mcs.MemberStatus{}
	switch {
	case st == nil:
		fmt.Fprintf(w, "Controller: no status published (configmap %s/%s not found): is mcs-controller running, with --leader-election-namespace=%s?\n",
			f.ControllerNamespace, mcs.StatusConfigMap, f.ControllerNamespace)
	default:
		age := time.Since(st.Updated.Time).Round(time.Second)
		stale := ""
		if age > staleAfter {
			stale = " — STALE: the controller has not written it since; is it running?"
		}
		fmt.Fprintf(w, "Controller: %s, status written %s ago%s\n", st.Version, age, stale)
		for _, m := range st.Members {
			byName[m.Name] = m
		}
		if len(st.KarmadaMCS) > 0 {
			fmt.Fprintf(w, "WARNING: Karmada's own MCS controllers run beside coredns-mcs (found %s); turn them off.\n", strings.Join(st.KarmadaMCS, "; "))
		}
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "MEMBER\tMODE\tREADY\tSYNCED\tDRAINED\tCLUSTER-ID\tNOTE")
	var names []string
	for _, cl := range clusters {
		names = append(names, cl.Name)
		ready := "Unknown"
		if c := meta.FindStatusCondition(cl.Status.Conditions, "Ready"); c != nil {
			ready = string(c.Status)
		}
		ms, known := byName[cl.Name]
		synced, drained, id := "?", "?", "?"
		if known {
			synced, drained, id = yesNo(ms.Synced), yesNo(ms.Drained), orDash(ms.ClusterID)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", cl.Name, cl.Spec.SyncMode, ready, synced, drained, id, ms.NotServed)
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	data := f.collect(ctx, names, metav1.NamespaceAll)
	keys := map[string]bool{}
	for _, n := range names {
		d := data[n]
		if d.err != nil {
			fmt.Fprintf(w, "member %s: %v\n", n, d.err)
			continue
		}
		for k := range d.exports {
			keys[k] = true
		}
		for k := range d.imports {
			keys[k] = true
		}
	}
	sorted := make([]string, 0, len(keys))
	for k := range keys {
		sorted = append(sorted, k)
	}
	sort.Strings(sorted)
	fmt.Fprintln(w)
	if len(sorted) == 0 {
		fmt.Fprintln(w, "No ServiceExport or ServiceImport in any member.")
		return nil
	}
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVICE\tEXPORTERS (ready endpoints)\tIMPORTERS (derived Service, ready endpoints)\tREADY\tCONFLICT")
	for _, k := range sorted {
		row := f.serviceRow(ctx, k, names, data)
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", k, orDash(strings.Join(row.exporters, ", ")), orDash(strings.Join(row.importers, ", ")), row.ready, row.conflict)
	}
	return tw.Flush()
}

type row struct {
	exporters, importers []string
	ready, conflict      string
}

func (f *Fleet) serviceRow(ctx context.Context, key string, names []string, data map[string]*memberData) row {
	ns, name, _ := strings.Cut(key, "/")
	r := row{ready: "-", conflict: "-"}
	var readyConds, conflictConds []string
	for _, n := range names {
		d := data[n]
		if d.err != nil {
			continue
		}
		if e := d.exports[key]; e != nil {
			ready, _, _, err := d.m.Endpoints(ctx, ns, name)
			cnt := fmt.Sprint(ready)
			if err != nil {
				cnt = "?"
			}
			r.exporters = append(r.exporters, fmt.Sprintf("%s (%s)", n, cnt))
			if c := meta.FindStatusCondition(e.Status.Conditions, string(mcsv1beta1.ServiceExportConditionValid)); c != nil && c.Status != metav1.ConditionTrue {
				readyConds = append(readyConds, n+": invalid, "+c.Reason)
			} else if c := meta.FindStatusCondition(e.Status.Conditions, string(mcsv1beta1.ServiceExportConditionReady)); c == nil {
				readyConds = append(readyConds, n+": no Ready condition yet")
			} else if c.Status != metav1.ConditionTrue {
				readyConds = append(readyConds, n+": "+c.Reason)
			}
			if c := meta.FindStatusCondition(e.Status.Conditions, string(mcsv1beta1.ServiceExportConditionConflict)); c != nil && c.Status == metav1.ConditionTrue {
				conflictConds = append(conflictConds, c.Reason)
			}
		}
		if im := d.imports[key]; im != nil {
			derived, _ := mcs.DerivedServiceOf(f.DerivedPrefix, ns, name, im.Annotations)
			svc, err := d.m.Service(ctx, ns, derived)
			desc := derived + " missing"
			switch {
			case err != nil:
				desc = derived + " ?"
			case svc != nil:
				ready, _, _, _ := d.m.Endpoints(ctx, ns, derived)
				desc = fmt.Sprintf("%s %s, %d", derived, svc.Spec.ClusterIP, ready)
			}
			r.importers = append(r.importers, fmt.Sprintf("%s (%s)", n, desc))
		}
	}
	switch {
	case len(r.exporters) == 0:
		r.ready = "False: no exporter"
	case len(readyConds) == 0:
		r.ready = "True"
	default:
		r.ready = "False: " + strings.Join(readyConds, "; ")
	}
	if len(conflictConds) > 0 {
		r.conflict = dedupe(conflictConds)
	}
	return r
}

func dedupe(s []string) string {
	sort.Strings(s)
	out := s[:0]
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	return strings.Join(out, ",")
}

func yesNo(b bool) string {
	if b {
		return "True"
	}
	return "False"
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
