"""Our Standard Webhooks signer against the reference package, and the endpoint URL rules."""

from datetime import datetime, timezone

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from worker.webhooks.endpoints import check_url
from worker.webhooks.outbox import build_body
from worker.webhooks.signing import new_secret, secret_bytes, signature_header


def headers(msg_id, ts, sig):
    return {"webhook-id": msg_id, "webhook-timestamp": str(ts), "webhook-signature": sig}


def test_our_signature_is_the_reference_one():
    secret, body, ts = new_secret(), b'{"type":"checkout.succeeded"}', int(datetime.now(timezone.utc).timestamp())
    ours = signature_header("msg_1-0", ts, body, [secret])
    assert ours == Webhook(secret).sign("msg_1-0", datetime.fromtimestamp(ts, timezone.utc), body.decode())
    assert Webhook(secret).verify(body, headers("msg_1-0", ts, ours)) == {"type": "checkout.succeeded"}


def test_during_a_rotation_either_secret_verifies_and_a_third_does_not():
    new, old, other = new_secret(), new_secret(), new_secret()
    body, ts = b'{"a":1}', int(datetime.now(timezone.utc).timestamp())
    both = signature_header("msg_2-0", ts, body, [new, old])
    assert len(both.split(" ")) == 2
    for secret in (new, old):
        Webhook(secret).verify(body, headers("msg_2-0", ts, both))
    with pytest.raises(WebhookVerificationError):
        Webhook(other).verify(body, headers("msg_2-0", ts, both))


@pytest.mark.parametrize("bad", ["", "s3cr3t-value", "whsec_", "whsec_QUJD", 42])
def test_a_bad_secret_is_refused_without_echoing_it(bad):
    with pytest.raises(ValueError) as refused:
        secret_bytes(bad)
    assert "s3cr3t" not in str(refused.value) and "QUJD" not in str(refused.value)


@pytest.mark.parametrize("url,private,resolves,ok", [
    ("https://shop.example/hooks", False, ["203.0.113.10"], False),  # documentation range: not global
    ("https://shop.example/hooks", False, ["8.8.8.8"], True),
    ("https://shop.example/hooks", False, ["8.8.8.8", "10.0.0.5"], False),
    ("http://localhost:9/x", False, ["127.0.0.1"], False),
    ("http://[::1]/x", False, ["::1"], False),
    ("http://metadata/x", False, ["169.254.169.254"], False),
    ("http://localhost:9/x", True, ["127.0.0.1"], True),
    ("ftp://shop.example/x", True, ["8.8.8.8"], False),
    ("shop.example/x", False, ["8.8.8.8"], False),
])
def test_endpoint_urls_must_reach_public_addresses(url, private, resolves, ok):
    assert (check_url(url, allow_private=private, resolve=lambda host: resolves) is None) is ok


def test_the_body_is_the_public_record_with_a_sequence_and_no_internal_fields():
    record = ["tradeNo", "T1", "state", "succeeded", "attempts", "1", "ipHash", "abc", "ipCounted", "1",
              "leaseToken", "t", "leaseUntil", "1700000020000", "nextCheckAt", "1700000010000",
              "webhookSeq", "3", "fingerprint", "f", "amount", "300", "paidAmount", "300.00",
              "createdAt", "1699999999000", "updatedAt", "1700000000000", "latencyMs", "212",
              "contact", '{"mobile": "090****4321"}', "needsReview", "false"]
    import json
    body = json.loads(build_body({"type": "checkout.succeeded", "at": "1700000000000", "sequence": "3",
                                  "record": json.dumps(record)}))
    assert body["type"] == "checkout.succeeded" and body["timestamp"] == "2023-11-14T22:13:20.000Z"
    assert body["data"] == {"tradeNo": "T1", "account": "default", "state": "succeeded", "attempts": 1, "amount": "300",
                            "paidAmount": "300", "gatewayPaidAmount": "300.00", "createdAt": 1699999999000,
                            "updatedAt": 1700000000000, "latencyMs": 212,
                            "contact": {"mobile": "090****4321"}, "needsReview": False, "sequence": 3}
