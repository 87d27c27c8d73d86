"""Running everything on one machine: the demo, a private ``redis-server``, child processes that
start and stop together, and the small HTTP server loop the sandbox and the webhook receiver share.
None of it is needed by a deployment."""
