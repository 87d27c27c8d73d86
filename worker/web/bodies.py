"""Reading a request body with a hard size limit, whatever the framing.

werkzeug's ``MAX_CONTENT_LENGTH`` refuses a too-large ``Content-Length``, but a chunked body (no
length) is cut at the limit and the rest silently dropped — a padded request would pass. Here the
raw stream is read up to one byte past the limit: more than the limit is 413, a broken framing
(a bad chunk size, a body shorter than announced) is 400.
"""

from __future__ import annotations

from flask import Request
from werkzeug.exceptions import BadRequest, RequestEntityTooLarge

__all__ = ["read_limited"]

try:  # gunicorn reports a broken chunked framing with its own exception type
    from gunicorn.http.errors import ParseException as _ServerFramingError
except ImportError:  # another WSGI server
    _ServerFramingError = ValueError

_FRAMING_ERRORS = (OSError, ValueError, _ServerFramingError)


def read_limited(request: Request, limit: int) -> bytes:
    """The whole body, at most ``limit`` bytes; ``RequestEntityTooLarge`` or ``BadRequest``."""
    if request.content_length is not None and request.content_length > limit:
        raise RequestEntityTooLarge()
    stream = request.environ["wsgi.input"]
    try:
        data = stream.read(limit + 1)
    except _FRAMING_ERRORS:  # a bad chunk size, a connection that ended early
        raise BadRequest("malformed request body") from None
    if len(data) > limit:
        raise RequestEntityTooLarge()
    if request.content_length is not None and len(data) < request.content_length:
        raise BadRequest("request body shorter than its Content-Length")
    return data
