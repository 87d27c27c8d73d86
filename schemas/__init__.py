"""Every marshmallow schema of vexora-checkout: the job payload in, the gateway's answers back.

Schemas only validate and shape data; they import nothing from ``worker``.
"""

from schemas.callback import CallbackSchema
from schemas.checkout import CheckoutRequestSchema, generate_trade_no, trade_no_errors
from schemas.gateway import CheckoutResponseSchema, QueryResponseSchema

__all__ = [
    "CheckoutRequestSchema",
    "CheckoutResponseSchema",
    "QueryResponseSchema",
    "CallbackSchema",
    "generate_trade_no",
    "trade_no_errors",
]
