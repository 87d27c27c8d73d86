"""The command line against real processes: enqueue from files, status, reconcile."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys

import pytest

from worker.domain import states
from tests.support.stack import Stack, payload

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack(redis_url, tmp_path_factory):
    s = Stack(redis_url, tmp_path_factory.mktemp("cli")).start(web=True)
    try:
        yield s
    finally:
        s.stop()


def cli(stack, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "worker.cli", *args], env=stack.env, input=stdin,
                          capture_output=True, text=True, timeout=120)


def as_csv(jobs: list[dict]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=sorted({k for job in jobs for k in job}))
    writer.writeheader()
    writer.writerows(jobs)
    return out.getvalue()


@pytest.mark.parametrize("fmt", ["json", "jsonl", "csv"])
def test_enqueue_a_file_and_wait_for_payment_links(stack, tmp_path, fmt):
    jobs = [payload() for _ in range(3)]
    text = {"json": json.dumps(jobs, ensure_ascii=False),
            "jsonl": "\n".join(json.dumps(j, ensure_ascii=False) for j in jobs),
            "csv": as_csv(jobs)}[fmt]
    path = tmp_path / f"jobs.{fmt}"
    path.write_text(text, encoding="utf-8")
    done = cli(stack, "enqueue", str(path), "--wait", "--timeout", "60")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [j["tradeNo"] for j in jobs]
    for job in jobs:
        assert stack.record(job["tradeNo"])["state"] == states.PAYING
        assert job["tradeNo"] in done.stderr and "paying" in done.stderr
    again = cli(stack, "enqueue", str(path))  # idempotent: the same file enqueues nothing twice
    assert again.returncode == 0
    assert all(stack.sent(j["tradeNo"])["created"] == 1 for j in jobs)


def test_invalid_rows_are_listed_with_line_and_field_and_nothing_is_enqueued(stack):
    jobs = [payload(), payload(mobile="0707777"), payload(), payload(firstname="Taro", email="x")]
    done = cli(stack, "enqueue", "--format", "csv", "-", stdin=as_csv(jobs))
    assert done.returncode == 3
    assert "line 3: mobile:" in done.stderr
    assert "line 5: firstname:" in done.stderr and "line 5: email:" in done.stderr
    assert "0707777" not in done.stderr  # rules, never values
    assert all(stack.record(j["tradeNo"]) is None for j in jobs)


def test_skip_invalid_enqueues_the_rest(stack):
    good, bad = payload(), payload(amount="-5")
    done = cli(stack, "enqueue", "--format", "jsonl", "--skip-invalid", "-",
               stdin="\n".join(json.dumps(j, ensure_ascii=False) for j in (good, bad)))
    assert done.returncode == 0 and done.stdout.split() == [good["tradeNo"]]
    assert stack.record(bad["tradeNo"]) is None


def test_wait_exits_4_when_a_job_gets_no_payment_link(stack):
    job = payload()
    stack.faults({"kind": "code_8000", "tradeNo": job["tradeNo"]})
    done = cli(stack, "enqueue", "--wait", "-", stdin=json.dumps(job, ensure_ascii=False))
    assert done.returncode == 4 and "declined" in done.stderr


def test_unreadable_input_names_the_line(stack):
    done = cli(stack, "enqueue", "--format", "jsonl", "-", stdin='{"a": 1}\n{oops\n')
    assert done.returncode == 1 and "line 2" in done.stderr


def test_status_prints_the_masked_record_or_exits_1(stack):
    trade_no = stack.enqueue(payload())
    stack.wait_state(trade_no, states.PAYING)
    shown = cli(stack, "status", trade_no)
    assert shown.returncode == 0
    record = json.loads(shown.stdout)
    assert record["state"] == "paying" and record["contact"]["mobile"].count("*") == 4
    assert cli(stack, "status", "NO-SUCH-JOB").returncode == 1


def test_status_watch_follows_the_job_to_its_end(stack):
    trade_no = stack.enqueue(payload())
    stack.wait_state(trade_no, states.PAYING)
    watch = subprocess.Popen([sys.executable, "-m", "worker.cli", "status", trade_no, "--watch"],
                             env=stack.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        shown = "".join(iter(watch.stdout.readline, "}\n"))  # the record, printed before it watches
        assert '"state": "paying"' in shown
        stack.set_gateway_status(trade_no, "0000")
        out, _ = watch.communicate(timeout=60)
    finally:
        watch.kill()
    assert watch.returncode == 0 and "paying -> succeeded" in out


def test_reconcile_now_runs_one_pass(stack):
    done = cli(stack, "reconcile", "--now")
    assert done.returncode == 0, done.stderr
    assert isinstance(json.loads(done.stdout), dict)


def test_help_lists_every_command():
    done = subprocess.run([sys.executable, "-m", "worker.cli", "--help"], capture_output=True, text=True)
    for command in ("demo", "enqueue", "status", "sandbox", "web", "worker", "beat", "reconcile"):
        assert command in done.stdout
