"""Property-based tests (hypothesis) on every parser: no input raises anything but the
project's own clear errors, and outputs keep their contracts (issue 8)."""
