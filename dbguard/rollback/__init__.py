"""`dbguard rollback`, the emergency lane: back to the last known-good revision, clearing blockers
under the kill policy (``lane``), and a half-applied revision undone or finished op by op
(``repair``)."""
