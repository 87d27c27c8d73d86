"""``worker.signing``, the public name of the gateway's MD5 signature (docs/design.md §Public interface):
a re-export of ``worker.gateway.signing``, where it lives with the rest of the protocol."""

from worker.gateway.signing import RawNumber, callback_body, parse_json_keeping_numbers, sign, signing_string, verify

__all__ = ["sign", "verify", "signing_string", "parse_json_keeping_numbers", "RawNumber", "callback_body"]
