"""A real Kubernetes control plane (etcd + kube-apiserver [+ kube-controller-manager]) for tests.

The binaries come from `hack/control-plane.sh build`; see docs/control-plane.md.
"""

from tests.kube.controlplane import (
    Binaries,
    ControlPlane,
    ControlPlaneError,
    KubectlError,
    active_control_planes,
    find_binaries,
)

__all__ = [
    "Binaries",
    "ControlPlane",
    "ControlPlaneError",
    "KubectlError",
    "active_control_planes",
    "find_binaries",
]
