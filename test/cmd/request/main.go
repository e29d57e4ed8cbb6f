// Command request is the local clusterset's stand-in for the seed's jeremyot/request:0a40de8 image:
// for --duration it requests --address once a second and prints each response body on a
// timestamped line (an error line when a request fails), then exits.
//
// --address is a host, host:port or URL; names are resolved through the pod's resolv.conf, which
// the node agent points at the member's kube-dns Service.
package main

import (
	"context"
	"flag"
	"io"
	"log"
	"net/http"
	"os"
	"strings"
	"time"
)

func main() {
	duration := flag.Duration("duration", 10*time.Second, "how long to keep requesting")
	address := flag.String("address", "", "host, host:port or URL to request")
	interval := flag.Duration("interval", time.Second, "time between requests")
	flag.Parse()
	log.SetOutput(os.Stdout) // answers on stdout, as `kubectl run -i` shows them; failures stay lines too
	if *address == "" {
		log.Fatal("--address is required")
	}
	url := *address
	if !strings.Contains(url, "://") {
		url = "http://" + url
	}
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	ctx, cancel := context.WithTimeout(context.Background(), *duration)
	defer cancel()
	tick := time.NewTicker(*interval)
	defer tick.Stop()
	for {
		get(ctx, client, url)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func get(ctx context.Context, client *http.Client, url string) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		log.Fatal(err)
	}
	resp, err := client.Do(req)
	if err != nil {
		if ctx.Err() == nil {
			log.Printf("error: %v", err)
		}
		return
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		log.Printf("error: reading the response: %v", err)
		return
	}
	log.Print(strings.TrimRight(string(body), "\n"))
}
