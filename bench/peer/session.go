package main

import (
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"sync"

	"github.com/fluxcd/pkg/ssa/utils"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// session is what both commands share: the objects, the REST config and a request counter
// wrapped around its transport, so each pass reports exactly what it sent.
type session struct {
	objects []*unstructured.Unstructured
	config  *rest.Config
	counter *counter
	opts    *common
}

func newSession(c *common) (*session, error) {
	objects, err := readObjects(c.dir)
	if err != nil {
		return nil, err
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", c.kubeconfig)
	if err != nil {
		return nil, err
	}
	cfg.QPS, cfg.Burst = float32(c.qps), c.burst // QPS < 0 turns client-go's limiter off
	cfg.UserAgent = "peer-bench"
	cnt := &counter{byVerb: map[string]int{}}
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper { return &countingTransport{next: rt, c: cnt} })
	return &session{objects: objects, config: cfg, counter: cnt, opts: c}, nil
}

// readObjects reads every *.yaml file of dir in name order (as sync_1k.py writes them).
func readObjects(dir string) ([]*unstructured.Unstructured, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		return nil, err
	}
	sort.Strings(files)
	var out []*unstructured.Unstructured
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			return nil, err
		}
		objs, err := utils.ReadObjects(fh)
		_ = fh.Close()
		if err != nil {
			return nil, err
		}
		out = append(out, objs...)
	}
	return out, nil
}

type counter struct {
	mu     sync.Mutex
	byVerb map[string]int
}

func (c *counter) add(verb string) {
	c.mu.Lock()
	c.byVerb[verb]++
	c.mu.Unlock()
}

func (c *counter) reset() {
	c.mu.Lock()
	c.byVerb = map[string]int{}
	c.mu.Unlock()
}

func (c *counter) snapshot() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]int, len(c.byVerb))
	for k, v := range c.byVerb {
		out[k] = v
	}
	return out
}

type countingTransport struct {
	next http.RoundTripper
	c    *counter
}

func (t *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	t.c.add(r.Method)
	return t.next.RoundTrip(r)
}
