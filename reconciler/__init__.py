"""gitops-reconciler: a pull-based GitOps controller for Kubernetes.

The package is layered (checked by import-linter, see pyproject.toml):
``cli`` -> ``controller`` -> ``sync``/``policy``/``source``/``render``/``report``/``aws`` -> ``kube``.
"""

from importlib import metadata

try:
    __version__ = metadata.version("gitops-reconciler")
except metadata.PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
