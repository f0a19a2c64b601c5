package main

import (
	"context"
	"fmt"

	"github.com/fluxcd/cli-utils/pkg/kstatus/polling"
	"github.com/fluxcd/pkg/ssa"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
)

// fluxSSA applies the objects as kustomize-controller does: one long-lived ResourceManager
// with the controller's field manager and owner-label group, and ApplyAllStaged with the
// default apply options (Namespaces first, waited for with kstatus, then the rest; each
// stage checks every object with a GET and a dry-run apply, --concurrency at a time, then
// applies the changed ones). The client and its lazy REST mapper are built once, outside
// the timed passes, as in a running controller.
func fluxSSA(s *session) (applier, error) {
	httpClient, err := rest.HTTPClientFor(s.config)
	if err != nil {
		return nil, err
	}
	mapper, err := apiutil.NewDynamicRESTMapper(s.config, httpClient)
	if err != nil {
		return nil, err
	}
	kc, err := client.New(s.config, client.Options{HTTPClient: httpClient, Mapper: mapper})
	if err != nil {
		return nil, err
	}
	poller := polling.NewStatusPoller(kc, mapper, polling.Options{})
	rm := ssa.NewResourceManager(kc, poller, ssa.Owner{Field: "kustomize-controller", Group: "kustomize.toolkit.fluxcd.io"})
	rm.SetConcurrency(s.opts.concurrency)
	return func(ctx context.Context, s *session) (map[string]int, error) {
		objects := make([]*unstructured.Unstructured, 0, len(s.objects))
		for _, o := range s.objects {
			objects = append(objects, o.DeepCopy()) // the manager sorts and mutates its input
		}
		cs, err := rm.ApplyAllStaged(ctx, objects, ssa.DefaultApplyOptions())
		if err != nil {
			return nil, fmt.Errorf("ApplyAllStaged: %w", err)
		}
		actions := map[string]int{}
		for _, e := range cs.Entries {
			actions[string(e.Action)]++
		}
		return actions, nil
	}, nil
}
