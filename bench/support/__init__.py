"""What several benchmarks share (not a benchmark: `make bench` runs bench/*.py only)."""
