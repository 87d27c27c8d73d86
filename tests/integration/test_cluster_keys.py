"""Store keys ready for Redis Cluster, shown by a real redis-server.

1. Every key a Lua script reads or writes is in its ``KEYS``: every script the worker registers
   or evals runs here with a prelude that checks each ``redis.call``/``redis.pcall``'s keys
   (``COMMAND GETKEYS``, Redis's own key positions) against ``KEYS`` and raises on any other —
   through the scripts' real call paths (create, each kind of move, flag, count_attempt, renew,
   schedule_check, limits, webhook dispatch and delivery, the reconciler's and dispatcher's locks).
   Redis does not refuse an undeclared key by itself (Redis 7 catches only a key of another slot,
   in cluster mode, in a script with a shebang), hence the prelude.
2. A job's keys share one slot: a single-node cluster (``--cluster-enabled``, all 16384 slots)
   runs a script declaring all of them, and refuses (CROSSSLOT) the names before the hash tags.
"""

from __future__ import annotations

import socket
import threading
import uuid
from pathlib import Path

import pytest
import redis

from worker.config.settings import Settings
from worker.domain import states
from worker.domain.errors import DuplicateTradeNoError
from worker.flows.reconcile import Reconciler
from worker.flows.settle import Settler
from worker.local.redis_server import RedisServer, free_port
from worker.sandbox.receiver import make_receiver
from worker.store import scripts
from worker.store.jobs import JobStore
from worker.store.keys import broker_queue
from worker.store.limits import IpLimits, ip_hash
from worker.waiting import wait_until
from worker.webhooks.delivery import Deliverer
from worker.webhooks.endpoints import Endpoints
from worker.webhooks.outbox import Dispatcher
from worker.webhooks.signing import new_secret

pytestmark = pytest.mark.integration

# Shadows ``redis`` for the rest of the script (the global table itself may be read-only).
_LUA = Path(__file__).with_name("lua")


def _lua(name: str) -> str:
    return (_LUA / f"{name}.lua").read_text()


_PRELUDE = _lua("key_check_prelude")


def _checked(source: str) -> str:
    if source.startswith("#!"):  # a shebang (Redis 7 flags) stays the first line
        first, _, rest = source.partition("\n")
        return f"{first}\n{_PRELUDE}\n{rest}"
    return f"{_PRELUDE}\n{source}"


class KeyChecking(redis.Redis):
    """A client whose every script runs under the prelude; it records which scripts ran."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.registered: dict[str, str] = {}  # sha -> the script's first line
        self.ran: set[str] = set()
        self.evals = 0

    def register_script(self, script):
        registered = super().register_script(_checked(script))
        self.registered[registered.sha] = script.strip().splitlines()[0]
        return registered

    def evalsha(self, sha, numkeys, *keys_and_args):
        self.ran.add(sha)
        return super().evalsha(sha, numkeys, *keys_and_args)

    def eval(self, script, numkeys, *keys_and_args):
        self.evals += 1
        return super().eval(_checked(script), numkeys, *keys_and_args)


@pytest.fixture
def checking(redis_url):
    client = KeyChecking.from_url(redis_url)
    prefix = f"kc{uuid.uuid4().hex[:8]}"
    yield client, prefix
    for key in client.scan_iter(f"{prefix}*"):
        client.delete(key)
    client.close()


@pytest.fixture
def receiver():
    secret = new_secret()
    server = make_receiver("127.0.0.1", free_port(), secrets=[secret], path="/webhooks")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    server.secret = secret
    yield server
    server.shutdown()
    server.server_close()


def _create(store: JobStore) -> str:
    trade_no = uuid.uuid4().hex[:16]
    assert store.create(trade_no, {"tradeNo": trade_no, "amount": "300"}, contact={"mobile": "090****1234"},
                        amount="300") == ("created", "queued")
    return trade_no


def test_the_checker_refuses_a_key_that_is_not_in_keys(checking):
    client, prefix = checking
    assert client.eval(_lua("set_declared"), 1, f"{prefix}:a") is not None
    with pytest.raises(redis.exceptions.ResponseError, match="undeclared key"):
        client.eval(_lua("set_undeclared"), 0, f"{prefix}:a")
    with pytest.raises(redis.exceptions.ResponseError, match="undeclared key"):
        client.eval(_lua("rename_undeclared"), 1, f"{prefix}:a", f"{prefix}:b")
    script = client.register_script(_lua("key_built_inside"))
    with pytest.raises(redis.exceptions.ResponseError, match="undeclared key"):
        script(keys=[], args=[f"{prefix}:index:"])


def _every_call_path(client: redis.Redis, prefix: str, receiver) -> None:
    """Each script the worker has, through the calls that run it, each branch that touches a key."""
    store = JobStore(client, prefix=prefix, ttl_seconds=3600, payload_retention=600)
    plain = JobStore(client, prefix=prefix, ttl_seconds=3600)  # no retention: a purge deletes
    endpoints = Endpoints(client, prefix, allow_private=True, rotation_grace=60)
    endpoints.add(f"http://127.0.0.1:{receiver.server_port}/webhooks", secret=receiver.secret)
    limits = IpLimits(client, prefix=prefix, daily=10, daily_successes=10)
    hashed = ip_hash("203.0.113.5", "secret")

    paid = _create(store)
    assert store.create(paid, {"tradeNo": paid, "amount": "300"}, contact={}) == ("existing", "queued")
    with pytest.raises(DuplicateTradeNoError):
        store.create(paid, {"tradeNo": paid, "amount": "301"}, contact={})
    assert limits.take(hashed, paid, store.keys.job(paid)) is None
    claim = store.move(paid, states.SUBMITTING, claim_lease=60, detail={"reason": "claim"},
                       detail_from={states.SUBMITTING: {"reason": "takeover"}})
    assert claim.applied and claim.payload
    assert store.count_attempt(paid, lease_token=claim.lease_token, sentAt=1) == 1
    assert store.count_attempt(paid, sentAt=2) == 2  # without a lease: a pipeline, no script
    assert store.renew_leases({paid: claim.lease_token}, 60) == set()
    assert not store.move(paid, states.SUBMITTING, claim_lease=60).applied  # the lease is held
    assert store.move(paid, states.PAYING, drop=["payload"], lease_token=claim.lease_token,
                      fields={"paymentLink": "L"}).applied  # purged, kept as retained
    assert client.exists(store.keys.retained(paid))
    assert store.move(paid, states.PARTIALLY_PAID, fields={"paidAmount": "100"}, increase="paidAmount").applied
    assert store.move(paid, states.PARTIALLY_PAID, fields={"paidAmount": "200"}, increase="paidAmount").applied
    assert store.flag(paid, "a person should look")
    store.annotate(paid, message="m")
    assert store.move(paid, states.SUCCEEDED, counters=limits.success_counter(hashed),
                      flag=("another look", {"source": "test"})).applied  # the move's own flag
    assert not store.move(paid, states.FAILED).applied
    assert limits.counts(hashed) == {"tx": 1, "ok": 1}
    version = store.load(paid).version
    assert store.unflag(paid, version - 1, {"resolvedBy": "o"}, {"operator": "o"}) == -1  # changed since
    assert store.unflag(paid, version, {"resolvedBy": "o"}, {"operator": "o"}) == 1
    store.flag(paid, "a person should look again")
    assert store.move(paid, states.FAILED, allowed_from={states.SUCCEEDED}, version=store.load(paid).version,
                      unflag={"operator": "o"}).applied  # a person's resolve that moves
    assert store.record_orphan("no-such-job", {"source": "callback", "status": "0000"})
    assert not store.record_orphan(paid, {"source": "callback", "status": "0000"})  # the job exists
    assert store.dismiss_orphan("no-such-job", "o", "refunded") == 1
    # the callback endpoint's step: the job's account read, a message pushed to the broker's list
    assert store.queue_callback(paid, [("default", "m")], "callbacks") == (True, "default", True)
    assert store.queue_callback("no-such-job", [("default", "m")], "callbacks") == (False, "default", True)
    client.delete(broker_queue("callbacks"))

    lost = _create(plain)
    assert plain.move(lost, states.REJECTED, allowed_from={states.QUEUED}, drop=["payload"]).applied
    unknown = _create(plain)
    held = plain.move(unknown, states.SUBMITTING, claim_lease=60)
    assert plain.move(unknown, states.PAYING, lease_token="not-the-token").lease_lost
    assert plain.move(unknown, states.UNKNOWN, lease_token=held.lease_token).applied
    assert plain.schedule_check(unknown, states.UNKNOWN, base=1, maximum=10) == 1
    assert plain.move(unknown, states.DECLINED, drop=["payload"]).applied  # purged, deleted
    assert client.exists(plain.keys.payload(unknown), plain.keys.retained(unknown)) == 0

    sent: list[list[str]] = []
    dispatcher = Dispatcher(client, prefix, endpoints, sent.append)
    assert dispatcher.run()["handed_out"] >= 1
    deliverer = Deliverer(dispatcher, endpoints, schedule=(5,), timeout=5, disable_after=10 ** 9,
                          allow_private=True)
    for batch in sent:
        assert set(deliverer.deliver(batch)) == {"delivered"}
    assert dispatcher.attempts(paid)
    empty = JobStore(client, prefix=f"{prefix}-reconcile")  # no open job: the pass only locks
    Reconciler(Settings(), empty, None, lambda trade_no: None, Settler(empty, None)).run()


def test_every_script_touches_only_the_keys_it_declares(checking, receiver):
    client, prefix = checking
    _every_call_path(client, prefix, receiver)
    assert client.registered and set(client.registered) <= client.ran, \
        [line for sha, line in client.registered.items() if sha not in client.ran]
    assert set(client.registered.values()) >= {scripts.source(name).strip().splitlines()[0]
                                                for name in scripts.names() if name != "clock"}


def test_a_key_built_inside_the_move_script_is_caught(checking, receiver, monkeypatch):
    """The check above fails when a script builds a key from its arguments again."""
    client, prefix = checking
    real = scripts.source

    def inject(source: str) -> str:  # before the first EXPIRE of the job
        lines = source.splitlines(keepends=True)
        at = next(i for i, line in enumerate(lines) if "'EXPIRE', KEYS[1], ttl)" in line)
        return "".join(lines[:at] + [_lua("move_builds_a_key")] + lines[at:])

    monkeypatch.setattr(scripts, "source", lambda name: inject(real(name)) if name == "move" else real(name))
    with pytest.raises(redis.exceptions.ResponseError, match="undeclared key"):
        _every_call_path(client, prefix, receiver)


# -- 2. one slot per job, on a real (single-node) cluster ----------------------------------------
def _cluster_port() -> int:
    """A free port whose cluster bus port (it + 10000, Redis 6's rule) is free and valid too."""
    while True:
        port = free_port()
        if port + 10000 <= 65535:
            with socket.socket() as bus:
                try:
                    bus.bind(("127.0.0.1", port + 10000))
                except OSError:
                    continue
            return port


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    data = tmp_path_factory.mktemp("cluster")
    server = RedisServer(_cluster_port(), data_dir=str(data), extra_args=(
        "--cluster-enabled", "yes", "--cluster-config-file", str(data / "nodes.conf")))
    with server:
        client = redis.Redis.from_url(server.url)
        client.execute_command("CLUSTER", "ADDSLOTS", *range(16384))
        wait_until(lambda: b"cluster_state:ok" in client.execute_command("CLUSTER", "INFO", NEVER_DECODE=True),
                   timeout=20, what="the cluster to own every slot")
        yield client
        client.close()


def _slot(client: redis.Redis, key: str) -> int:
    return int(client.execute_command("CLUSTER", "KEYSLOT", key))


def test_a_jobs_keys_share_one_slot_and_a_script_may_declare_them_all(cluster):
    trade_no = uuid.uuid4().hex[:16]
    store = JobStore(cluster, prefix="vexora", ttl_seconds=3600)
    endpoints = Endpoints(cluster, "vexora", allow_private=True, rotation_grace=60)
    dispatcher = Dispatcher(cluster, "vexora", endpoints, lambda m: None)
    own = [store.keys.job(trade_no), store.keys.history(trade_no), store.keys.payload(trade_no),
           store.keys.retained(trade_no), dispatcher.attempts_key(trade_no)]
    assert all(f"{{{trade_no}}}" in key for key in own)
    assert {_slot(cluster, key) for key in own} == {_slot(cluster, trade_no)}
    touch = _lua("touch_all")
    assert cluster.eval(touch, len(own), *own) == len(own)
    before = [f"vexora:job:{trade_no}", f"vexora:job:{trade_no}:history", f"vexora:job:{trade_no}:payload"]
    with pytest.raises(redis.exceptions.ResponseError, match="don't hash to the same slot"):  # CROSSSLOT
        cluster.eval(touch, len(before), *before)


def test_the_per_job_scripts_run_on_a_cluster_and_the_mixed_ones_are_refused(cluster):
    """count_attempt and a one-job renew touch only the job's slot; create (and every move) also
    writes the global keys — what docs/redis-cluster.md says a Cluster deployment still needs."""
    store = JobStore(cluster, prefix="vexora", ttl_seconds=3600)
    trade_no = uuid.uuid4().hex[:16]
    cluster.hset(store.keys.job(trade_no), mapping={"state": states.SUBMITTING, "leaseToken": "tok",
                                                   "leaseUntil": store.server_now_ms() + 60_000})
    assert store.count_attempt(trade_no, lease_token="tok", sentAt=1) == 1
    assert store.renew_leases({trade_no: "tok"}, 60) == set()
    with pytest.raises(redis.exceptions.ResponseError, match="don't hash to the same slot"):
        store.create(uuid.uuid4().hex[:16], {"amount": "1"}, contact={})
