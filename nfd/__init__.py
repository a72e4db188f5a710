"""nfd: a Python implementation of Kubernetes Node Feature Discovery."""

__version__ = "0.1.0"

# The namespace every built-in label lives in (upstream's default).
DEFAULT_LABEL_NS = "feature.node.kubernetes.io"
