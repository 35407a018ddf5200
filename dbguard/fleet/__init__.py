"""Batched rollouts across a fleet of databases: the fleet file, the control database, the
rollout's orchestration and its worker processes. ``dbguard.core.fleet`` holds the pure decisions."""
