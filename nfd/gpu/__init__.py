"""NVIDIA GPU support: the operator-compatible marking stage and sysfs-only GPU facts."""
