"""`dbguard plan` and the upgrade pre-flight's plan (``planner``): offline SQL per revision, live
table facts, and the risk rules of ``dbguard.risk`` applied to them."""
