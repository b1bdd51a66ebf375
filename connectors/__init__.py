"""External services: one folder per service with its real client and deterministic fake."""
