"""`dbguard upgrade`, `downgrade`, `resolve` and `status`: the guarded run (``guard``: pre-flight,
execution with bounded lock waits and retries, post-flight), its monitor thread (heartbeat and
watchdog), the end check that makes a verdict (``verify``) and the state a target is in (``status``)."""
