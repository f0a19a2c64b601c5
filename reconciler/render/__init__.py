"""Turn the files of one revision into Kubernetes objects, offline.

Never talks to the network (enforced by import-linter): rendering must give the same
objects for the same revision on a laptop, in CI and in the cluster."""
