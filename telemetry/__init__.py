"""Prometheus metrics, health checks and logging."""
