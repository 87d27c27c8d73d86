"""The API contract, machine-checked (issue 24): schemathesis over the OpenAPI document the server
actually serves (``GET /v1/openapi.json``), against the web app under gunicorn with a real worker,
the sandbox and Redis, authenticated with an API key holding every scope.

Every operation is called with generated requests — valid ones (positive) and ones the document
forbids (negative) — and every answer is checked: no server error, a status the document declares
for the operation, a declared content type, the declared headers, a body that validates against
the document. Then the stateful phase follows the document's links (create a checkout → read,
query, resolve it; list endpoints → disable, enable, rotate one). Failures are collected, not
raised at the first one, so the run reports them all; the test asserts there are none.

Bounded in the default run (a few examples per operation, a short stateful run); under
``VEXORA_RELIABILITY_FULL=1`` at least 100 examples per operation and mode. The figures line
(``api contract: …``) says how many operations and requests, the failures by check, the share of
generated valid requests answered 2xx (valid checkouts: 202), and whether the stateful phase read,
queried and resolved checkouts it had created.
"""

from __future__ import annotations

import ipaddress
import itertools
import re
import uuid
from collections import Counter, defaultdict

import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given
from hypothesis.stateful import Bundle, initialize
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.generation.stateful.state_machine import StepInput
from schemathesis.specs.openapi.checks import (content_type_conformance, response_headers_conformance,
                                               response_schema_conformance, status_code_conformance)

from worker.domain import access
from worker.store.apikeys import ApiKeys
from worker.webhooks.endpoints import Endpoints
from tests.support.figures import FULL
from tests.support.stack import Stack

pytestmark = pytest.mark.integration

ALL_SCOPES = tuple(sorted(access.SCOPES))  # every scope there is, a new one included
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance]
EXAMPLES = 100 if FULL else 10  # per operation and generation mode
STATEFUL_EXAMPLES = 100 if FULL else 25  # scenarios; each up to STATEFUL_STEPS calls
STATEFUL_STEPS = 10 if FULL else 8
# What depends on the credential, which no document can state: the key acts for its account
# (default), so a valid request names that one where it names one (schemathesis' parameters
# override the body's; the header is set on the request, valid requests only).
KEY_ACCOUNT = "default"
KEY_ACCOUNT_HEADERS = {"Vexora-Account": KEY_ACCOUNT}
SHOWN = 5  # failures printed in the assertion message, each with its curl command
_FRESH = itertools.count()


def _public_ip(value: str) -> bool:
    """The document's ``public-ip`` format (the ``ipAddress`` rule, schemas/checkout.py): an IPv4
    or IPv6 address that is globally routable, and not multicast or reserved."""
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return False
    return address.is_global and not (address.is_multicast or address.is_reserved)


def _register_formats() -> None:
    """Teach schemathesis the document's own string formats, so that it generates valid values
    for them (a checkout valid per the document is then accepted: the figures measure it)."""
    from hypothesis import strategies as st
    v4 = st.integers(0, 2 ** 32 - 1).map(lambda n: str(ipaddress.IPv4Address(n)))
    # IPv6 from the global unicast block 2000::/3 (a random 128-bit number is rarely public)
    v6 = st.integers(1 << 125, (1 << 126) - 1).map(lambda n: str(ipaddress.IPv6Address(n)))
    # what is still not public (about a fifth) is filtered out: a few tries at most
    schemathesis.openapi.format("public-ip", st.one_of(v4, v6).filter(_public_ip))


class Tally:
    """What the run saw: requests per operation and phase, statuses, failures by check."""

    def __init__(self):
        self.requests = 0
        self.positive = 0
        self.positive_2xx = Counter()  # operation -> 2xx answers to valid requests
        self.positive_sent = Counter()
        self.positive_statuses: dict[str, Counter] = defaultdict(Counter)  # operation -> status -> count
        self.statuses: dict[str, Counter] = defaultdict(Counter)
        self.failures: list[tuple[str, str, str]] = []  # (check, operation, report)
        self.failure_keys: set[tuple[str, str, str]] = set()
        self.unsatisfiable: list[str] = []

    def record(self, case, response, mode: GenerationMode | None) -> None:
        self.requests += 1
        label = case.operation.label
        self.statuses[label][response.status_code] += 1
        if mode == GenerationMode.POSITIVE:
            self.positive += 1
            self.positive_sent[label] += 1
            self.positive_statuses[label][response.status_code] += 1
            if 200 <= response.status_code < 300:
                self.positive_2xx[label] += 1

    def validate(self, case, response, **kwargs) -> None:
        try:
            case.validate_response(response, checks=CHECKS, **kwargs)
        except schemathesis.errors.FailureGroup as group:  # every failing check of this answer
            for failure in group.exceptions:
                check = next(iter(getattr(failure, "checks", ()) or ()), type(failure).__name__)
                # one report per check, operation and kind of failure (the first one seen)
                key = (check, case.operation.label, getattr(failure, "title", "") or "")
                if key in self.failure_keys:
                    continue
                self.failure_keys.add(key)
                self.failures.append((check, case.operation.label, str(group)))

    def by_check(self) -> Counter:
        return Counter(check for check, _op, _text in self.failures)


@pytest.fixture(scope="module")
def stack(redis_url, tmp_path_factory):
    s = Stack(redis_url, tmp_path_factory.mktemp("contract")).start(web=True)
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="module")
def key(stack) -> str:
    _record, text = ApiKeys(stack.runtime.redis, stack.runtime.store.keys).create("contract test", "default",
                                                                                  ALL_SCOPES)
    return text


@pytest.fixture(scope="module")
def endpoint(stack) -> str:
    """One webhook endpoint of the key's account, for the links from the endpoint list. Added
    through the product's Endpoints with a stand-in resolver (the test machine has no DNS; the
    generated endpoint URLs do not resolve here, so POST /v1/webhooks/endpoints cannot add one)."""
    rt = stack.runtime
    endpoints = Endpoints(rt.redis, stack.settings.key_prefix, allow_private=False, rotation_grace=60,
                          resolve=lambda host: ["93.184.215.14"])
    return endpoints.add("https://hooks.merchant.example/vexora", account=KEY_ACCOUNT)["id"]


@pytest.fixture(scope="module")
def schema(stack, key):
    _register_formats()
    loaded = schemathesis.openapi.from_url(stack.web_url + "/v1/openapi.json", timeout=15)
    loaded.config.update(base_url=stack.web_url, headers={"Authorization": f"Bearer {key}"},
                         request_timeout=20, parameters={"body.account": KEY_ACCOUNT})
    return loaded


@pytest.fixture(scope="module")
def tally() -> Tally:
    return Tally()


def _operations(schema) -> list:
    return [result.ok() for result in schema.get_all_operations()]


def _run_operation(operation, mode: GenerationMode, tally: Tally, key: str) -> None:
    headers = {"Authorization": f"Bearer {key}"}
    if mode == GenerationMode.POSITIVE:
        headers.update(KEY_ACCOUNT_HEADERS)

    @given(case=operation.as_strategy(generation_mode=mode))
    @hypothesis.settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=not FULL,
                         phases=[Phase.explicit, Phase.generate],
                         suppress_health_check=list(HealthCheck))
    def run(case):
        if mode == GenerationMode.POSITIVE and case.operation.label == "POST /v1/checkouts" \
                and isinstance(case.body, dict):
            # a fresh tradeNo, as a producer makes one: hypothesis reuses short ones ("0") with
            # another payload, which the server rightly refuses (409), and that says nothing of
            # whether the document is as strict as the server
            case.body["tradeNo"] = f"ct{next(_FRESH):010d}{uuid.uuid4().hex[:12]}"
        response = case.call(headers=headers, timeout=20)
        tally.record(case, response, mode)
        tally.validate(case, response, headers=headers)

    try:
        run()
    except hypothesis.errors.Unsatisfiable:
        # nothing to generate in this mode: an operation without parameters or body has no
        # request the document forbids
        assert mode == GenerationMode.NEGATIVE, f"{operation.label}: no valid request can be generated"
        tally.unsatisfiable.append(operation.label)


def test_every_operation_answers_as_documented(schema, key, tally, figures):
    operations = _operations(schema)
    assert len(operations) >= 15, [op.label for op in operations]
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            _run_operation(operation, mode, tally, key)
    created = tally.positive_sent["POST /v1/checkouts"]
    accepted = tally.positive_2xx["POST /v1/checkouts"]
    share = 100.0 * sum(tally.positive_2xx.values()) / max(tally.positive, 1)
    # What a valid request (by the document) got, by kind of answer: 404 is an id the generator
    # made up (only the stateful phase has real ones), 422 on POST /v1/webhooks/endpoints a host
    # name that does not resolve on this machine (no DNS), 401 on /vexora/notify a callback whose
    # MD5 signature no generator can make; a 400 or 422 elsewhere would be a rule the document
    # does not state.
    answers = Counter()
    for label, statuses in tally.positive_statuses.items():
        for status, count in statuses.items():
            answers["2xx" if 200 <= status < 300 else "404_unknown_id" if status == 404
                    else "422_unresolvable_host" if (label, status) == ("POST /v1/webhooks/endpoints", 422)
                    else "401_unsigned_callback" if (label, status) == ("POST /vexora/notify", 401)
                    else f"{status}_{label}"] += count
    refused_content = sum(count for kind, count in answers.items() if kind.startswith(("400_", "422_"))
                          and kind != "422_unresolvable_host")
    with_real_ids = (tally.positive - answers["404_unknown_id"] - answers["422_unresolvable_host"]
                     - answers["401_unsigned_callback"])
    by_check = tally.by_check()
    figures.add("api contract: stateless", operations=len(operations), requests=tally.requests,
                valid_requests=tally.positive, valid_2xx_pct=share,
                valid_2xx_pct_where_possible=100.0 * answers["2xx"] / max(with_real_ids, 1),
                valid_answers=",".join(f"{k}:{answers[k]}" for k in sorted(answers)),
                valid_checkouts=created, valid_checkouts_202=accepted,
                valid_checkout_answers=_statuses(tally.positive_statuses["POST /v1/checkouts"]),
                failures=len(tally.failures), **{name: by_check[name] for name in sorted(by_check)})
    _assert_no_failures(tally)
    # the document is as strict as the server: what it allows, the server takes (a valid checkout
    # is accepted; nothing valid is refused for its content)
    assert accepted == created, tally.positive_statuses["POST /v1/checkouts"]
    assert refused_content == 0, {label: dict(st) for label, st in tally.positive_statuses.items()}


class _Reached:
    def __init__(self):
        self.created: set[str] = set()
        self.reached: dict[str, set[str]] = defaultdict(set)  # read/query/resolve -> tradeNos
        self.steps = 0
        self.endpoint_actions = Counter()  # "<action>:<status>" on the listed endpoint


_ON_CHECKOUT = {"GET /v1/checkouts/{tradeNo}": "read", "POST /v1/checkouts/{tradeNo}/query": "query",
                "POST /v1/checkouts/{tradeNo}/resolve": "resolve"}
_ON_ENDPOINT = re.compile(r"^POST /v1/webhooks/endpoints/\{endpointId\}/")


def test_stateful_links_create_read_query_resolve(schema, key, endpoint, figures):
    """The document's links let a client (here: schemathesis' state machine) go from a created
    checkout to reading, querying and resolving it, and from the endpoint list to an endpoint's
    actions; every answer on the way conforms."""
    tally = Tally()
    reached = _Reached()
    endpoint_id = endpoint
    headers = {"Authorization": f"Bearer {key}", **KEY_ACCOUNT_HEADERS}
    base = schema.as_state_machine()
    if not base.schema.statistic.transitions.total:
        pytest.fail("the document has no links: the stateful phase cannot run")

    create = schema["/v1/checkouts"]["POST"].as_strategy(generation_mode=GenerationMode.POSITIVE)

    class Machine(base):
        # Every scenario starts with a checkout created: schemathesis' own choice of where to start
        # takes userId in its body for a reference to a user no operation creates, and so never
        # starts there while other roots exist. What follows is the document's links.
        @initialize(target=Bundle("catch_all"), case=create)
        def create_checkout(self, case):
            self.recorder.record_case(case=case)
            return self._step(StepInput.initial(case))

        def get_call_kwargs(self, case):
            return {"headers": headers, "timeout": 20}

        def after_call(self, response, case):
            super().after_call(response, case)
            reached.steps += 1
            label = case.operation.label
            tally.record(case, response, None)
            if label == "POST /v1/checkouts" and response.status_code == 202:
                reached.created.add(response.json()["tradeNo"])
            what = _ON_CHECKOUT.get(label)
            trade_no = (case.path_parameters or {}).get("tradeNo")
            if what and trade_no in reached.created:
                reached.reached[what].add(trade_no)
            endpoint = _ON_ENDPOINT.match(label)
            if endpoint and (case.path_parameters or {}).get("endpointId") == endpoint_id:
                reached.endpoint_actions[f"{case.path_parameters.get('action')}:{response.status_code}"] += 1

        def validate_response(self, response, case, additional_checks=None, **kwargs):
            tally.validate(case, response, headers=headers, recorder=self.recorder)

    Machine.run(settings=hypothesis.settings(max_examples=STATEFUL_EXAMPLES, stateful_step_count=STATEFUL_STEPS,
                                             deadline=None, database=None, derandomize=not FULL,
                                             phases=[Phase.generate],
                                             suppress_health_check=list(HealthCheck)))
    by_check = tally.by_check()
    figures.add("api contract: stateful", transitions=base.schema.statistic.transitions.total,
                requests=reached.steps, checkouts_created=len(reached.created),
                read=len(reached.reached["read"]), query=len(reached.reached["query"]),
                resolve=len(reached.reached["resolve"]),
                endpoint_actions=_statuses(reached.endpoint_actions),
                failures=len(tally.failures), **{name: by_check[name] for name in sorted(by_check)})
    _assert_no_failures(tally)
    assert reached.created, f"the stateful phase created no checkout; statuses: {dict(tally.statuses)}"
    for what in ("read", "query", "resolve"):
        assert reached.reached[what], f"the stateful phase never reached {what} on a checkout it created"
    assert reached.endpoint_actions, "the stateful phase never reached an action of the listed endpoint"


def _statuses(counts: Counter) -> str:
    return ",".join(f"{what}:{n}" for what, n in sorted(counts.items(), key=str)) or "none"


def _assert_no_failures(tally: Tally) -> None:
    if tally.failures:
        shown = "\n\n".join(f"[{check}] {op}\n{text}" for check, op, text in tally.failures[:SHOWN])
        pytest.fail(f"{len(tally.failures)} distinct contract failures ({dict(tally.by_check())}); "
                    f"statuses seen: { {op: dict(c) for op, c in tally.statuses.items()} }\n\n{shown}",
                    pytrace=False)
