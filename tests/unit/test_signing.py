"""Signing vectors computed by hand (the digests with coreutils' md5sum, independently)."""

from worker.signing import RawNumber, callback_body, parse_json_keeping_numbers, sign, signing_string, verify


def test_katakana_values_and_ascii_key_order():
    params = {"tradeNo": "00000007", "timestamp": "1724142041682", "firstname": "タロウ",
              "channelCode": "EWALLET", "amount": "300"}
    assert signing_string(params) == \
        "amount=300channelCode=EWALLETfirstname=タロウtimestamp=1724142041682tradeNo=00000007"
    # printf '%s' 'amount=300channelCode=EWALLETfirstname=タロウtimestamp=1724142041682tradeNo=00000007secret123' | md5sum
    assert sign(params, "secret123") == "6e3ea7c5642dede8f34dacfe6f321313"


def test_sign_field_empty_and_none_values_are_skipped():
    params = {"b": "2", "a": "1", "sign": "whatever", "remark": "", "userId": None}
    assert signing_string(params) == "a=1b=2"
    assert sign(params, "S") == "6e8568e2a055b40328249de76d11115e"


def test_uppercase_keys_sort_before_lowercase():
    assert signing_string({"b": "1", "B": "2", "a": "3"}) == "B=2a=3b=1"


def test_numbers_keep_their_text_and_booleans_are_json_words():
    body = parse_json_keeping_numbers(b'{"tradeNo":"T1abc","amount":30000.00,"status":"0000","paid":true}')
    assert body["amount"] == "30000.00" and isinstance(body["amount"], RawNumber)
    assert signing_string(body) == "amount=30000.00paid=truestatus=0000tradeNo=T1abc"
    assert sign(body, "") == "e5983205131f2d687644b5f8743702ec"


def test_verify_accepts_the_right_sign_only():
    params = {"a": "1", "b": "2"}
    good = {**params, "sign": "6e8568e2a055b40328249de76d11115e"}
    assert verify(good, "S")
    assert not verify(good, "other secret")
    assert not verify({**params, "sign": "6e8568e2a055b40328249de76d11115f"}, "S")
    assert not verify({**params, "a": "2", "sign": good["sign"]}, "S")
    assert not verify(params, "S")
    assert not verify({**params, "sign": 123}, "S")
    assert not verify({**params, "sign": "ｆ" * 32}, "S")


def test_sign_is_lowercase_hex():
    digest = sign({"x": "y"}, "k")
    assert len(digest) == 32 and digest == digest.lower() and int(digest, 16) >= 0


def test_an_empty_secret_verifies_nothing():
    # with VEXORA_APP_SECRET unset, a callback signed "with" the empty secret must not pass
    params = {"tradeNo": "T1", "status": "0000"}
    forged = {**params, "sign": sign(params, "")}
    assert not verify(forged, "")
    assert verify({**params, "sign": sign(params, "k")}, "k")


def test_callback_body_is_signed_utf8_json_with_the_amount_a_bare_number():
    body = callback_body({"tradeNo": "T1", "amount": "300.00", "status": "0000", "message": "支払い済み"}, "S")
    # printf '%s' 'amount=300.00message=支払い済みstatus=0000tradeNo=T1S' | md5sum
    assert body == ('{"tradeNo":"T1","amount":300.00,"status":"0000","message":"支払い済み",'
                    '"sign":"88d761107041b0475eedf1c495da3bc8"}').encode()
    fields = parse_json_keeping_numbers(body)
    assert isinstance(fields["amount"], RawNumber) and verify(fields, "S")
