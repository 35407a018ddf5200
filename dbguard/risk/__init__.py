"""Risk rules with stable codes (DG101...), the lock model, and the planner that applies them.

Importing this package is cheap: sqlglot is imported by :mod:`dbguard.risk.parse` on first use.
"""
