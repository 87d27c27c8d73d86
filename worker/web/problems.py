"""The web app's error answers as RFC 9457 problem documents (``application/problem+json``).

Every error of the producer API, the webhooks API, ``/metrics``, ``/healthz`` and the routing
itself (404, 405, 413, 500, ...) is a problem document::

    {"type": "about:blank", "title": "Unprocessable Content", "status": 422,
     "detail": "invalid checkout", "instance": "/v1/checkouts",
     "error": "invalid checkout", "errors": {"mobile": ["..."]}}

- ``type`` is ``about:blank``: the HTTP status says what kind of problem it is, and ``title`` is
  that status's name in RFC 9110 (the same on every Python version).
- ``detail`` says what went wrong with this request; it never carries payer data, a secret or an
  exception's text.
- ``instance`` is the request's path (a relative reference, so it is right behind any proxy).
- Extension members, where an answer had them before, at the same place: ``errors`` (field
  errors of a 422 or a 409, as before), ``tradeNo`` (a 503 the client retries with). ``error``
  repeats ``detail`` under the name the answers used before problem documents, so clients that
  read it keep working.

Not here: ``POST /vexora/notify`` answers the gateway in its own plain-text form
(docs/gateway.md §Callbacks (notify)), and the ``/ops`` pages are HTML for people.
"""

from __future__ import annotations

from http import HTTPStatus

from flask import Response, current_app, has_request_context, request

__all__ = ["PROBLEM_JSON", "problem", "title_of"]

PROBLEM_JSON = "application/problem+json"

# RFC 9110's names where Python's http module (before 3.13) still has the older ones
_TITLES = {413: "Content Too Large", 422: "Unprocessable Content"}


def title_of(status: int) -> str:
    """The status's name as RFC 9110 gives it (``about:blank`` problems use it as their title)."""
    if status in _TITLES:
        return _TITLES[status]
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def problem(status: int, detail: str | None = None, *, headers=None, **extensions) -> Response:
    """A problem document answer; ``extensions`` are added as top-level members."""
    body: dict[str, object] = {"type": "about:blank", "title": title_of(status), "status": status}
    if detail:
        body["detail"] = detail
    if has_request_context():
        body["instance"] = request.path
    if detail:
        body["error"] = detail  # the member clients read before problem documents
    body.update(extensions)
    response = current_app.response_class(current_app.json.dumps(body, sort_keys=False) + "\n", status=status,
                                          mimetype=PROBLEM_JSON)
    for name, value in (headers.items() if isinstance(headers, dict) else headers or ()):
        if name.lower() != "content-type":
            response.headers[name] = value
    return response
