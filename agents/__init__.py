"""Agent platform: registry, orchestrator, runs, approvals and vector memory."""
