package multicluster

import (
	"hash/fnv"

	"github.com/coredns/coredns/request"
	"github.com/miekg/dns"

	"github.com/coredns-mcs/coredns-mcs/plugin/multicluster/object"
)

// answer fills msg with the records of qtype (A, AAAA or SRV) that name n holds, as many as fit
// the client's message size (512 bytes without EDNS0, 64 KiB over TCP). A name that has records
// always answers at least one of them; an SRV record that cannot fit with the question sets TC.
//
// A headless service answers the window of endpoints that fits, starting at an offset derived
// from the client's address: the same client gets the same endpoints for A and AAAA (the window
// is sized by the larger of each endpoint's two answers), different clients get different ones.
func answer(state request.Request, msg *dns.Msg, n *node, qtype uint16, qname string) {
	// Header, question, and room for an OPT record with an extended error.
	overhead := 12 + (len(qname) + 1 + 4) + 32
	if small := dns.MinMsgSize - overhead; (n.hs == nil && fixedSize(n, qtype) <= small) ||
		(n.hs != nil && n.ep >= 0 && n.hs.eps[n.ep].weight() <= small) {
		// What a ClusterSetIP or endpoint name holds fits any client: no need to ask its size.
		fillAnswer(state, msg, n, qtype, qname, dns.MinMsgSize-overhead)
		return
	}
	size := state.Size()
	budget := size - overhead
	for {
		fillAnswer(state, msg, n, qtype, qname, budget)
		// A and AAAA sizes are exact: every owner name is a pointer to the question. SRV replies
		// are measured: past 16 KiB, names can no longer be compressed.
		if qtype != dns.TypeSRV || len(msg.Answer) == 0 {
			return
		}
		over := msg.Len() - (size - 32)
		if over <= 0 {
			return
		}
		budget -= over + budget/16
		msg.Answer, msg.Extra = nil, nil
		if budget <= 0 {
			msg.Truncated = true
			return
		}
	}
}

func fillAnswer(state request.Request, msg *dns.Msg, n *node, qtype uint16, qname string, budget int) {
	if n.hs == nil {
		rrs, extra := n.fixed(qtype)
		fixed(msg, rrs, extra, qname, budget)
		return
	}
	if n.ep >= 0 { // one endpoint's name
		e := &n.hs.eps[n.ep]
		switch qtype {
		case dns.TypeA:
			msg.Answer = copyRecords[dns.A](e.a[:min(len(e.a), budget/sizeA)], qname, nil)
		case dns.TypeAAAA:
			msg.Answer = copyRecords[dns.AAAA](e.aaaa[:min(len(e.aaaa), budget/sizeAAAA)], qname, nil)
		}
		return
	}
	if n.count == 0 {
		return
	}
	offset := clientOffset(state, n.count)
	switch qtype {
	case dns.TypeA:
		if n.kind == kindService && n.hs.n4 > 0 {
			msg.Answer = addresses(n, offset, budget, false, qname)
		}
	case dns.TypeAAAA:
		if n.kind == kindService && n.hs.n6 > 0 {
			msg.Answer = addresses(n, offset, budget, true, qname)
		}
	case dns.TypeSRV:
		srvs(msg, n, offset, budget)
	}
}

// fixed copies the ready-made records of a ClusterSetIP name: all of them, or as many answers as
// fit (without the additional records, which are optional).
func fixed(msg *dns.Msg, rrs, extra []dns.RR, qname string, budget int) {
	used, k := 0, 0
	for ; k < len(rrs); k++ {
		s := rrSize(rrs[k])
		if used+s > budget {
			break
		}
		used += s
	}
	if k == 0 {
		msg.Truncated = len(rrs) > 0
		return
	}
	msg.Answer = copyRRs(rrs[:k], qname)
	extraSize := 0
	for _, rr := range extra {
		extraSize += rrSize(rr)
	}
	if k == len(rrs) && used+extraSize <= budget {
		msg.Extra = copyRRs(extra, "")
	}
}

// fixed returns a ClusterSetIP name's ready-made records of qtype and their additional records.
func (n *node) fixed(qtype uint16) (rrs, extra []dns.RR) {
	switch qtype {
	case dns.TypeA:
		return n.a, nil
	case dns.TypeAAAA:
		return n.aaaa, nil
	case dns.TypeSRV:
		return n.srv, n.extra
	}
	return nil, nil
}

// fixedSize is the wire size of a ClusterSetIP name's records of qtype.
func fixedSize(n *node, qtype uint16) int {
	rrs, extra := n.fixed(qtype)
	total := 0
	for _, rr := range rrs {
		total += rrSize(rr)
	}
	for _, rr := range extra {
		total += rrSize(rr)
	}
	return total
}

func rrSize(rr dns.RR) int {
	switch x := rr.(type) {
	case *dns.A:
		return sizeA
	case *dns.AAAA:
		return sizeAAAA
	case *dns.SRV:
		return sizeSRV(x.Target)
	}
	return dns.Len(rr)
}

// cursor walks the endpoints of a node's ranges from an offset, wrapping around.
type cursor struct {
	n    *node
	r, i int
}

func newCursor(n *node, offset int) cursor {
	r := 0
	for offset >= n.ranges[r].hi-n.ranges[r].lo {
		offset -= n.ranges[r].hi - n.ranges[r].lo
		r++
	}
	return cursor{n: n, r: r, i: n.ranges[r].lo + offset}
}

func (c *cursor) next() {
	if c.i++; c.i == c.n.ranges[c.r].hi {
		c.r = (c.r + 1) % len(c.n.ranges)
		c.i = c.n.ranges[c.r].lo
	}
}

// addresses answers A (or AAAA with v6) for a headless service name: the endpoints from offset
// whose addresses fit; if that window holds none of this family, the first endpoint that has
// some, with as many as fit.
func addresses(n *node, offset, budget int, v6 bool, qname string) []dns.RR {
	eps := n.hs.eps
	used, count, records := 0, 0, 0
	for c := newCursor(n, offset); count < n.count; c.next() {
		e := &eps[c.i]
		w := e.weight()
		if used+w > budget {
			break
		}
		used += w
		count++
		if v6 {
			records += len(e.aaaa)
		} else {
			records += len(e.a)
		}
	}
	if records == 0 {
		for c, k := newCursor(n, offset), 0; k < n.count; c, k = c.advanced(), k+1 {
			e := &eps[c.i]
			if v6 && len(e.aaaa) > 0 {
				return copyRecords[dns.AAAA](e.aaaa[:min(len(e.aaaa), budget/sizeAAAA)], qname, nil)
			}
			if !v6 && len(e.a) > 0 {
				return copyRecords[dns.A](e.a[:min(len(e.a), budget/sizeA)], qname, nil)
			}
		}
		return nil
	}
	out := make([]dns.RR, 0, records)
	if v6 {
		as := make([]dns.AAAA, 0, records)
		for c, k := newCursor(n, offset), 0; k < count; c, k = c.advanced(), k+1 {
			out, as = appendRecords(out, as, eps[c.i].aaaa, qname)
		}
	} else {
		as := make([]dns.A, 0, records)
		for c, k := newCursor(n, offset), 0; k < count; c, k = c.advanced(), k+1 {
			out, as = appendRecords(out, as, eps[c.i].a, qname)
		}
	}
	return out
}

func (c cursor) advanced() cursor { c.next(); return c }

// srvs answers SRV for a headless service name (every port) or one of its _<port>._<proto>
// names: one record per port of each endpoint in the window, the endpoint's addresses in the
// additional section. Endpoints without a name have no SRV record.
func srvs(msg *dns.Msg, n *node, offset, budget int) {
	hs := n.hs
	used, count, nSRV, nA, nAAAA := 0, 0, 0, 0, 0
	for c := newCursor(n, offset); count < n.count; c.next() {
		e := &hs.eps[c.i]
		ports := n.ranges[c.r].ports
		w := 0
		if e.target != "" {
			w = len(ports)*sizeSRV(e.target) + len(e.a)*sizeA + len(e.aaaa)*sizeAAAA
		}
		if used+w > budget {
			break
		}
		used += w
		count++
		if w > 0 {
			nSRV += len(ports)
			nA += len(e.a)
			nAAAA += len(e.aaaa)
		}
	}
	qname := msg.Question[0].Name
	if nSRV == 0 {
		// Not one whole endpoint fits: the first named one, with the ports (and then addresses)
		// that fit.
		for c, k := newCursor(n, offset), 0; k < n.count; c, k = c.advanced(), k+1 {
			e := &hs.eps[c.i]
			ports := n.ranges[c.r].ports
			if e.target == "" || len(ports) == 0 {
				continue
			}
			fit := min(len(ports), budget/sizeSRV(e.target))
			if fit <= 0 {
				msg.Truncated = true
				return
			}
			left := budget - fit*sizeSRV(e.target)
			recs := make([]dns.SRV, 0, fit)
			msg.Answer, _ = appendSRV(make([]dns.RR, 0, fit), recs, ports[:fit], qname, e.target, hs)
			a := e.a[:min(len(e.a), left/sizeA)]
			left -= len(a) * sizeA
			aaaa := e.aaaa[:min(len(e.aaaa), left/sizeAAAA)]
			msg.Extra = copyRecords[dns.AAAA](aaaa, e.target, copyRecords[dns.A](a, e.target, nil))
			return
		}
		return
	}
	answers := make([]dns.RR, 0, nSRV)
	extra := make([]dns.RR, 0, nA+nAAAA)
	recs, as, aaaas := make([]dns.SRV, 0, nSRV), make([]dns.A, 0, nA), make([]dns.AAAA, 0, nAAAA)
	for c, k := newCursor(n, offset), 0; k < count; c, k = c.advanced(), k+1 {
		e := &hs.eps[c.i]
		if e.target == "" {
			continue
		}
		answers, recs = appendSRV(answers, recs, n.ranges[c.r].ports, qname, e.target, hs)
		extra, as = appendRecords(extra, as, e.a, e.target)
		extra, aaaas = appendRecords(extra, aaaas, e.aaaa, e.target)
	}
	msg.Answer, msg.Extra = answers, extra
}

// The appenders copy record templates into one backing array per type (which never grows past
// its exact capacity, so the pointers taken stay valid) and set the owner name: records are never
// shared with later plugins (the cache plugin rewrites TTLs in place), and a 100-endpoint answer
// costs a few allocations, not one per record.

// rrPointer is a pointer to a record struct (*dns.A, *dns.AAAA).
type rrPointer[T any] interface {
	*T
	dns.RR
}

func appendRecords[T any, P rrPointer[T]](out []dns.RR, arr []T, tmpl []T, owner string) ([]dns.RR, []T) {
	for i := range tmpl {
		arr = append(arr, tmpl[i])
		rr := P(&arr[len(arr)-1])
		rr.Header().Name = owner
		out = append(out, rr)
	}
	return out, arr
}

func appendSRV(out []dns.RR, arr []dns.SRV, ports []object.Port, owner, target string, hs *headlessSet) ([]dns.RR, []dns.SRV) {
	for _, p := range ports {
		arr = append(arr, dns.SRV{
			Hdr:    dns.RR_Header{Name: owner, Rrtype: dns.TypeSRV, Class: dns.ClassINET, Ttl: hs.ttl},
			Weight: hs.weight, Port: uint16(p.Port), Target: target,
		})
		out = append(out, &arr[len(arr)-1])
	}
	return out, arr
}

// copyRecords copies record templates with owner as their name, appended to out.
func copyRecords[T any, P rrPointer[T]](tmpl []T, owner string, out []dns.RR) []dns.RR {
	if len(tmpl) == 0 {
		return out
	}
	out, _ = appendRecords[T, P](out, make([]T, 0, len(tmpl)), tmpl, owner)
	return out
}

// copyRRs copies ready-made records; owner, when set, replaces the owner name (so the answer
// carries the question's spelling).
func copyRRs(rrs []dns.RR, owner string) []dns.RR {
	if len(rrs) == 0 {
		return nil
	}
	out := make([]dns.RR, len(rrs))
	for i, rr := range rrs {
		switch x := rr.(type) {
		case *dns.A:
			c := *x
			out[i] = &c
		case *dns.AAAA:
			c := *x
			out[i] = &c
		case *dns.SRV:
			c := *x
			out[i] = &c
		default:
			out[i] = dns.Copy(rr)
		}
		if owner != "" {
			out[i].Header().Name = owner
		}
	}
	return out
}

func clientOffset(state request.Request, n int) int {
	if n <= 1 {
		return 0
	}
	h := fnv.New32a()
	h.Write([]byte(state.IP()))
	return int(h.Sum32() % uint32(n))
}
