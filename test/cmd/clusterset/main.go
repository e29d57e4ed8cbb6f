// Command clusterset brings the local clusterset up and down (test/clusterset/lab); it is what
// hack/clusterset.sh runs.
//
// Usage: clusterset up|down|status|env|stop NAME...|start NAME...|dns MEMBER [BINARY]|netns MEMBER NS/POD
package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/coredns-mcs/coredns-mcs/test/clusterset/lab"
)

const usage = "usage: hack/clusterset.sh up|down|status|env|stop NAME...|start NAME...|dns MEMBER [BINARY]|netns MEMBER NS/POD"

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "[clusterset] error:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, usage)
		os.Exit(2)
	}
	root := os.Getenv("CMCS_ROOT")
	if root == "" {
		wd, err := os.Getwd()
		if err != nil {
			return err
		}
		root = wd
	}
	root, _ = filepath.Abs(root)
	c, err := lab.FromEnv(root)
	if err != nil {
		return err
	}
	switch args[0] {
	case "up":
		return c.Up()
	case "down":
		return c.Down()
	case "status":
		return c.Status(os.Stdout)
	case "env":
		c.Env(os.Stdout)
		return nil
	case "stop":
		return c.Stop(args[1:]...)
	case "start":
		return c.Start(args[1:]...)
	case "dns":
		if len(args) < 2 {
			return fmt.Errorf("usage: dns MEMBER [BINARY]")
		}
		bin := ""
		if len(args) > 2 {
			bin = args[2]
		}
		return c.DNS(args[1], bin)
	case "netns":
		if len(args) != 3 {
			fmt.Fprintln(os.Stderr, "usage: hack/clusterset.sh netns MEMBER NAMESPACE/POD")
			os.Exit(2)
		}
		out, err := c.PodNetns(args[1], args[2])
		if err != nil {
			return err
		}
		fmt.Print(out)
		return nil
	}
	fmt.Fprintln(os.Stderr, usage)
	os.Exit(2)
	return nil
}
