// Command serve is the local clusterset's stand-in for the seed's jeremyot/serve:0a40de8 image: an
// HTTP server on :8080 that answers every request with --message, a Go template in which
// {{env "NAME"}} is an environment variable and {{addr}} the address the request arrived on.
//
// The node agent (test/cmd/nodeagent) runs it in a pod's network namespace when a pod's image is
// jeremyot/serve:*, with the pod's args and env, so the seed's Deployment runs unchanged.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"text/template"
)

func main() {
	message := flag.String("message", "hello from {{addr}}", "response body: a Go template with {{env \"NAME\"}} and {{addr}}")
	listen := flag.String("listen", ":8080", "address to listen on")
	flag.Parse()

	tmpl, err := template.New("message").Funcs(template.FuncMap{
		"env":  os.Getenv,
		"addr": func() string { return "" }, // replaced per request
	}).Parse(*message)
	if err != nil {
		log.Fatalf("--message: %v", err)
	}
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		local := ""
		if a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
			local, _, _ = net.SplitHostPort(a.String())
		}
		t, err := tmpl.Clone()
		if err == nil {
			var buf bytes.Buffer
			err = t.Funcs(template.FuncMap{"addr": func() string { return local }}).Execute(&buf, nil)
			if err == nil {
				w.Header().Set("Content-Type", "text/plain; charset=utf-8")
				_, _ = w.Write(buf.Bytes())
				return
			}
		}
		http.Error(w, err.Error(), http.StatusInternalServerError)
	})
	srv := &http.Server{Addr: *listen}
	go func() {
		ch := make(chan os.Signal, 1)
		signal.Notify(ch, syscall.SIGTERM, syscall.SIGINT)
		<-ch
		_ = srv.Close()
	}()
	fmt.Fprintf(os.Stderr, "serve: listening on %s\n", *listen)
	if err := srv.ListenAndServe(); err != nil && err != http.ErrServerClosed {
		log.Fatal(err)
	}
}
