"""Signed outgoing webhooks (Standard Webhooks) to the merchant's own endpoints.

    signing.py    whsec_ secrets and the v1 HMAC-SHA256 signature header
    endpoints.py  the operator's endpoints: URL checks, event-type filters, rotation, disabling
    outbox.py     events recorded by the store's move script -> one delivery per endpoint, due times
    delivery.py   one POST per delivery, a batch's attempts recorded together, the retry schedule in Redis
    poster.py     the POST itself: kept-alive connections, a total deadline

The operators' HTTP API for these is ``worker/web/webhooks_api.py``; the merchant-side receiver of
the demo and the tests is ``worker/sandbox/receiver.py``. Their keys and Lua scripts are the
store's (``worker/store/keys.py``, ``worker/store/lua/webhook_*.lua``).

An event is written to the outbox stream in the same atomic step as the state change it reports
(``worker.store.jobs``); the dispatcher (``vexora.webhooks.dispatch``, every second on the ``webhooks``
queue) fans it out to the endpoints that want it and hands due deliveries to
``vexora.webhooks.deliver``. Delivery is at least once: a receiver drops a repeat by
``webhook-id``, a stale event by the job's ``sequence``.
"""
