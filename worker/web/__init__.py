"""The HTTP surface: the web app (``gunicorn worker.web:app``) — gateway callbacks in, the producer
API, webhooks and review endpoints, the OpenAPI document, ``/metrics``, health and the operations
page.

``app`` is built on first access, not when a module of this package is imported: reading the
OpenAPI document or the error helpers must not build a web app from the environment.
"""

__all__ = ["app", "create_app"]


def __getattr__(name: str):
    if name in __all__:
        import importlib
        return getattr(importlib.import_module("worker.web.wsgi"), name)
    raise AttributeError(f"module 'worker.web' has no attribute {name!r}")
