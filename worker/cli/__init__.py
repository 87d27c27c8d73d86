"""The ``vexora-checkout`` command line.

Settings come from the environment (``worker.config.settings``); options given here override them.
Every command but ``demo`` (which checks the environment it builds) and ``--help`` checks them
first. Exit codes: 0 done; 1 a failure the message explains (e.g. Redis unreachable); 2 bad
usage or bad settings (each ``VAR: problem`` printed); 3 invalid input rows (nothing enqueued);
4 ``--wait``: some jobs did not get a payment link.

One module per command group (``jobs``, ``review``, ``webhooks``, ``keys``, ``services``,
``sandbox``, ``maintenance``, ``operators``, ``audit``),
each adding its commands to the group in ``main``; importing this package registers them all.
The commands import what they use when they run, so that ``--help`` and a typo stay fast.
"""

from worker.cli import audit, jobs, keys, maintenance, operators, review, sandbox, services, webhooks
from worker.cli.main import main

__all__ = ["main"]

GROUPS = (jobs, review, webhooks, keys, services, sandbox, maintenance, operators, audit)  # imported for their commands
