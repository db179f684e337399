"""Local stand-ins for the remote APIs the serving side talks to (used by tests and benchmarks)."""
