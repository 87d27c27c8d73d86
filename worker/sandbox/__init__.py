"""The sandbox gateway: a local stand-in for Vexora (create, query, a cashier page, callbacks), for
the demo, the tests and the benchmarks — never part of a production deployment.

``gateway`` is the HTTP server and its orders; ``cashier`` the payer's page and autopay;
``notify`` the callbacks it sends; ``receiver`` is the merchant's side of webhooks (a verifying
receiver for the demo and the tests); ``server`` the HTTP loop they share. ``vexora-checkout
sandbox`` runs the gateway.
"""

from worker.sandbox.gateway import GatewayConfig, IpLimitReached, Sandbox, SandboxServer, make_server, run

__all__ = ["Sandbox", "SandboxServer", "GatewayConfig", "IpLimitReached", "make_server", "run"]
