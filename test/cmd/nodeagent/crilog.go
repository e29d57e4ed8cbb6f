package main

import (
	"bytes"
	"fmt"
	"os"
	"sync"
	"time"
)

// criLog writes a container's output in the CRI log format kubelets write and kwok serves to
// `kubectl logs`: "<RFC3339Nano time> <stdout|stderr> F <line>".
type criLog struct {
	mu sync.Mutex
	f  *os.File
}

type criStream struct {
	log  *criLog
	name string
	buf  []byte
}

func (s *criStream) Write(p []byte) (int, error) {
	s.buf = append(s.buf, p...)
	for {
		i := bytes.IndexByte(s.buf, '\n')
		if i < 0 {
			return len(p), nil
		}
		s.line(s.buf[:i])
		s.buf = s.buf[i+1:]
	}
}

func (s *criStream) flush() {
	if len(s.buf) > 0 {
		s.line(s.buf)
		s.buf = nil
	}
}

func (s *criStream) line(b []byte) {
	s.log.mu.Lock()
	defer s.log.mu.Unlock()
	fmt.Fprintf(s.log.f, "%s %s F %s\n", time.Now().UTC().Format(time.RFC3339Nano), s.name, b)
}
