"""The shared kernel: what every app of the project builds on, and nothing app-specific.

The error shape and its handlers, the Redis client, pagination and strict API fields, the
OpenAPI schema hooks, authentication, the embedded services, migration and admin helpers. It
imports no app (enforced by import-linter in `make lint`).
"""
