"""Every marshmallow schema of vexora-checkout: the job payload in, the gateway's answers back,
the public record out, and the HTTP API's other bodies.

Schemas only validate and shape data; they import nothing from ``worker``.
"""

from schemas.callback import CallbackSchema
from schemas.checkout import CheckoutRequestSchema, generate_trade_no, trade_no_errors
from schemas.gateway import CheckoutResponseSchema, QueryResponseSchema
from schemas.record import (
    CheckoutEventDataSchema,
    CheckoutRecordSchema,
    ContactSchema,
    HistoryEntrySchema,
    ReviewItemSchema,
)

__all__ = [
    "CheckoutRequestSchema",
    "CheckoutResponseSchema",
    "QueryResponseSchema",
    "CallbackSchema",
    "CheckoutRecordSchema",
    "CheckoutEventDataSchema",
    "HistoryEntrySchema",
    "ContactSchema",
    "ReviewItemSchema",
    "generate_trade_no",
    "trade_no_errors",
]
