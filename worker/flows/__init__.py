"""The use cases, one per module: submit a checkout (``submit``), apply a gateway report
(``settle``), apply a callback (``callbacks``), the reconciler's pass (``reconcile``), the review
queue (``review``), the lease heartbeat (``lease``). Each receives the services it uses (built
once by ``worker.runtime.wiring``); none imports ``runtime``, ``web`` or ``cli``.
"""
