"""Running everything on one machine: the demo, a private ``redis-server``, child processes that
start and stop together, a Sentinel group. None of it is needed by a deployment, and nothing of the
product imports it (the CLI's ``demo`` command starts it)."""
