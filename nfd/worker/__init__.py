"""nfd-worker: configuration, discovery, the run loop, events and publishing."""
