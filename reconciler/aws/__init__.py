"""EKS-specific pieces: bearer-token auth and drift of the cluster definition itself."""
