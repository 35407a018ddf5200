"""`dbguard drift` and `snapshot`, and the guarded run's pre-flight drift check (``checks``): the
expected schema from env.py's models, migrations replayed in a scratch database or a snapshot file
(``expected``), the live catalog read in a forked child while the models import (``prefetch`` on
``forked``)."""
