// Command peer is the Go baseline that bench/sync_1k.py measures our engine against.
//
// It applies the same objects two ways, each in one process run:
//
//	peer flux-ssa  --kubeconfig K --dir D   fluxcd/pkg/ssa's ResourceManager.ApplyAllStaged, as
//	                                        kustomize-controller drives it, then a no-op re-apply
//	peer raw-patch --kubeconfig K --dir D   a concurrent server-side-apply PATCH per object, twice:
//	                                        the API server's own limit on this machine
//
// and prints one JSON document: wall seconds, requests by verb (counted in the client's
// transport) and what each pass did. Objects are read from every *.yaml file in --dir.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"syscall"
	"time"
)

// Pass is what one apply pass over the objects cost and did.
type Pass struct {
	Seconds    float64        `json:"seconds"`
	CPUSeconds float64        `json:"cpu_seconds"` // this process's user+system CPU
	Requests   map[string]int `json:"requests"`
	Actions    map[string]int `json:"actions"`
}

// Result is the one JSON document a command prints.
type Result struct {
	Tool        string  `json:"tool"`
	Objects     int     `json:"objects"`
	Concurrency int     `json:"concurrency"`
	QPS         float64 `json:"qps"`
	Initial     Pass    `json:"initial"`
	NoOp        Pass    `json:"noop"`
}

type common struct {
	kubeconfig  string
	dir         string
	concurrency int
	qps         float64
	burst       int
	timeout     time.Duration
	step        bool
}

func flags(name string, defaultConcurrency int) (*flag.FlagSet, *common) {
	fs := flag.NewFlagSet(name, flag.ExitOnError)
	c := &common{}
	fs.StringVar(&c.kubeconfig, "kubeconfig", os.Getenv("KUBECONFIG"), "kubeconfig of the cluster to apply to")
	fs.StringVar(&c.dir, "dir", "", "folder whose *.yaml files hold the objects")
	fs.IntVar(&c.concurrency, "concurrency", defaultConcurrency, "requests in flight at once")
	fs.Float64Var(&c.qps, "qps", -1, "client-side rate limit (client-go's QPS); <0: none")
	fs.IntVar(&c.burst, "burst", 300, "client-side burst when --qps > 0")
	fs.BoolVar(&c.step, "step", false, `before each pass and at the end, print "ready <pass>" on stderr and wait for a line on stdin`)
	fs.DurationVar(&c.timeout, "timeout", 10*time.Minute, "give up after this long")
	return fs, c
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: peer flux-ssa|raw-patch --kubeconfig K --dir D [--concurrency N] [--qps Q]")
		os.Exit(2)
	}
	var (
		res *Result
		err error
	)
	switch cmd, args := os.Args[1], os.Args[2:]; cmd {
	case "flux-ssa":
		fs, c := flags(cmd, 4) // kustomize-controller's --concurrent-ssa default
		_ = fs.Parse(args)
		res, err = run(c, fluxSSA)
	case "raw-patch":
		fs, c := flags(cmd, 16)
		_ = fs.Parse(args)
		res, err = run(c, rawPatch)
	default:
		fmt.Fprintf(os.Stderr, "peer: unknown command %q\n", cmd)
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "peer: %v\n", err)
		os.Exit(1)
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	_ = enc.Encode(res)
}

// applier runs one pass over the objects; run calls it twice (initial, then no-op).
type applier func(ctx context.Context, s *session) (map[string]int, error)

func run(c *common, setup func(*session) (applier, error)) (*Result, error) {
	if c.dir == "" {
		return nil, fmt.Errorf("--dir is required")
	}
	s, err := newSession(c)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	pass, err := setup(s)
	if err != nil {
		return nil, err
	}
	res := &Result{Tool: os.Args[1], Objects: len(s.objects), Concurrency: c.concurrency, QPS: c.qps}
	in := bufio.NewReader(os.Stdin)
	for i, p := range []*Pass{&res.Initial, &res.NoOp} {
		handshake(c.step, in, []string{"initial", "noop"}[i])
		s.counter.reset()
		start, cpu0 := time.Now(), cpuSeconds()
		actions, err := pass(ctx, s)
		if err != nil {
			return nil, err
		}
		p.Seconds = time.Since(start).Seconds()
		p.CPUSeconds = cpuSeconds() - cpu0
		p.Requests = s.counter.snapshot()
		p.Actions = actions
	}
	handshake(c.step, in, "done")
	return res, nil
}

// handshake lets a caller measure the API server around each pass (--step): the peer says
// "ready <pass>" on stderr and waits for a line on stdin before going on.
func handshake(step bool, in *bufio.Reader, next string) {
	if !step {
		return
	}
	fmt.Fprintf(os.Stderr, "ready %s\n", next)
	_, _ = in.ReadString('\n')
}

func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}
