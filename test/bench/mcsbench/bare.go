package main

import (
	"flag"
	"fmt"
	"net"

	"github.com/miekg/dns"
)

// cmdBare is the DNS benchmark's lower ceiling: a bare miekg/dns UDP responder (the library
// CoreDNS serves with) that answers every question with one A record built ahead, with no plugin
// chain, no lookup and no logging. What it costs per query is the floor of this stack on this
// machine: the server's read, unpack, pack and write.
func cmdBare(args []string) error {
	fs := flag.NewFlagSet("bare", flag.ExitOnError)
	port := fs.Int("port", 0, "loopback UDP port")
	_ = fs.Parse(args)
	if *port == 0 {
		return fmt.Errorf("--port is required")
	}
	a := &dns.A{Hdr: dns.RR_Header{Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 5}, A: net.IPv4(10, 0, 0, 1).To4()}
	dns.HandleFunc(".", func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		m.Authoritative = true
		if len(r.Question) == 1 && r.Question[0].Qtype == dns.TypeA {
			rr := *a
			rr.Hdr.Name = r.Question[0].Name
			m.Answer = []dns.RR{&rr}
		}
		_ = w.WriteMsg(m)
	})
	srv := &dns.Server{Addr: fmt.Sprintf("127.0.0.1:%d", *port), Net: "udp"}
	return srv.ListenAndServe()
}
