package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// image says how a container of one image runs on the local clusterset, where no image is ever
// pulled: either a stand-in program the clusterset builds (the seed's two images), or the image's
// own ENTRYPOINT and CMD run with the host's tools (general-purpose images: shells, dig, curl, nc,
// socat, … are whatever the host has installed).
type image struct {
	// standIn is a program in --bin-dir that plays the image; the container's args are its args.
	standIn string
	// entrypoint and cmd are the image's ENTRYPOINT and CMD, resolved against the host's PATH.
	entrypoint, cmd []string
}

// images is keyed by repository (see repository): the registry host and a "library/" prefix are
// dropped, so "docker.io/library/busybox:1.36" is "busybox".
var images = map[string]image{
	"jeremyot/serve":   {standIn: "serve"},
	"jeremyot/request": {standIn: "request"},

	"busybox":                 {cmd: []string{"sh"}},
	"alpine":                  {cmd: []string{"/bin/sh"}},
	"debian":                  {cmd: []string{"bash"}},
	"ubuntu":                  {cmd: []string{"/bin/bash"}},
	"nicolaka/netshoot":       {cmd: []string{"zsh"}},
	"alpine/socat":            {entrypoint: []string{"socat"}},
	"alpine/curl":             {entrypoint: []string{"curl"}},
	"curlimages/curl":         {entrypoint: []string{"curl"}},
	"e2e-test-images/agnhost": {entrypoint: []string{"/agnhost"}},
	"pause":                   {entrypoint: []string{"/pause"}},
}

// hostAliases are what a program of an image is called on the host when the host lacks it.
var hostAliases = map[string][]string{
	"zsh": {"bash", "sh"},
	"ash": {"sh"},
}

// repository strips an image reference to its repository: "jeremyot/serve:0a40de8" →
// "jeremyot/serve"; "docker.io/jeremyot/serve@sha256:…" → "jeremyot/serve"; "docker.io/library/busybox"
// → "busybox".
func repository(image string) string {
	if i := strings.Index(image, "@"); i >= 0 {
		image = image[:i]
	}
	if i := strings.LastIndex(image, ":"); i > strings.LastIndex(image, "/") {
		image = image[:i]
	}
	if parts := strings.SplitN(image, "/", 2); len(parts) == 2 && (strings.ContainsAny(parts[0], ".:") || parts[0] == "localhost") {
		image = parts[1]
	}
	return strings.TrimPrefix(image, "library/")
}

// argv is what a container runs on the host: Kubernetes' rules for command and args over the
// image's ENTRYPOINT and CMD (command replaces ENTRYPOINT and drops CMD; args replace CMD), with
// $(VAR) references expanded from env, and the program resolved against the host (see hostProgram).
// ok is false for an image the local clusterset does not run.
func argv(c corev1.Container, binDir string, env map[string]string) (args []string, ok bool, err error) {
	img, ok := images[repository(c.Image)]
	if !ok {
		return nil, false, nil
	}
	expanded := func(in []string) []string {
		out := make([]string, len(in))
		for i, s := range in {
			out[i] = expand(s, env)
		}
		return out
	}
	if img.standIn != "" {
		return append([]string{filepath.Join(binDir, img.standIn)}, expanded(c.Args)...), true, nil
	}
	switch {
	case len(c.Command) > 0:
		args = append(expanded(c.Command), expanded(c.Args)...)
	case len(c.Args) > 0:
		args = append(append([]string{}, img.entrypoint...), expanded(c.Args)...)
	default:
		args = append(append([]string{}, img.entrypoint...), img.cmd...)
	}
	if len(args) == 0 {
		return nil, true, fmt.Errorf("image %s has no command and the container gives none", c.Image)
	}
	args, err = hostProgram(args)
	return args, true, err
}

// hostProgram resolves argv[0] on the host: an absolute path the host has is kept; otherwise its
// base name is looked up in the host's PATH (an image's /bin/sh is the host's sh), then its
// aliases. agnhost's "pause" is `sleep infinity`; its other subcommands are not played.
func hostProgram(args []string) ([]string, error) {
	base := filepath.Base(args[0])
	switch base {
	case "agnhost":
		if len(args) > 1 && args[1] == "pause" {
			return []string{mustLook("sleep"), "infinity"}, nil
		}
		return nil, fmt.Errorf("agnhost %s is not played by the local clusterset (only pause; or give the container a command)", strings.Join(args[1:], " "))
	case "pause":
		return []string{mustLook("sleep"), "infinity"}, nil
	}
	if filepath.IsAbs(args[0]) {
		if st, err := os.Stat(args[0]); err == nil && !st.IsDir() {
			return args, nil
		}
	}
	for _, name := range append([]string{base}, hostAliases[base]...) {
		if p, err := exec.LookPath(name); err == nil {
			return append([]string{p}, args[1:]...), nil
		}
	}
	return nil, fmt.Errorf("%s: executable file not found on the host (install it there; the local clusterset runs images' commands with the host's tools)", args[0])
}

func mustLook(name string) string {
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	return name
}

// expand replaces $(NAME) with env's value as the kubelet does: an undefined reference is kept as
// written, and $$ is a literal $.
func expand(s string, env map[string]string) string {
	if !strings.Contains(s, "$") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 >= len(s) {
			b.WriteByte(s[i])
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i++
		case '(':
			end := strings.IndexByte(s[i+2:], ')')
			if end < 0 {
				b.WriteString(s[i:])
				return b.String()
			}
			name := s[i+2 : i+2+end]
			if v, ok := env[name]; ok {
				b.WriteString(v)
			} else {
				b.WriteString(s[i : i+3+end])
			}
			i += 2 + end
		default:
			b.WriteByte('$')
		}
	}
	return b.String()
}
