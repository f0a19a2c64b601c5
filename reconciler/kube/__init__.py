"""The only code that talks to the Kubernetes API server.

Everything goes through :class:`reconciler.kube.client.Kube`, which speaks raw JSON over
the official client's connection pool: the client's generated models are too slow for
the object counts a GitOps controller handles (see docs/architecture.md)."""
