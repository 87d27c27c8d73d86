"""``fewer_collections``: what a set-up process built leaves the collector's way, and the young
generation is collected less often; the worker (``worker_ready``) and gunicorn's workers
(``post_worker_init``) call it."""

import gc
from pathlib import Path

from worker.config.startup import GC_YOUNG_THRESHOLD, fewer_collections


def test_fewer_collections_freezes_and_raises_the_young_threshold():
    before = gc.get_threshold()
    try:
        fewer_collections()
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold()[0] == GC_YOUNG_THRESHOLD > before[0]
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def test_workers_and_gunicorn_call_it_once_set_up():
    from celery import signals

    from worker import celery as celery_module

    receivers = [r() for _, r in signals.worker_ready.receivers]
    assert celery_module._fewer_collections in receivers
    conf = Path(__file__).resolve().parents[2] / "gunicorn.conf.py"
    namespace: dict = {}
    exec(compile(conf.read_text(), str(conf), "exec"), namespace)  # noqa: S102 - our own config file
    assert namespace["post_worker_init"].__code__.co_names.count("fewer_collections") == 1
