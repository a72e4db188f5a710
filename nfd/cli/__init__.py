"""Command-line entry points. Each is thin: parse flags, call into the package.

Subcommand modules are imported lazily so ``nfd-worker`` never loads what
only the master needs (the Kubernetes client above all).
"""
