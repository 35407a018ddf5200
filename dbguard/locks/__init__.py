"""`dbguard locks` and `locks kill`: the wait-for tree and the audited lock killer (``killer``); the
lock graph's queries are in ``dbguard.db.lock_graph``, the kill policy in ``dbguard.core.victims``."""
