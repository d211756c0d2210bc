"""Activities: all of the engine's I/O (database reads, HTTP POSTs, workflow starts)."""
