"""Durable storage: versioned array files, segments, write-ahead log, manifest, recovery."""
