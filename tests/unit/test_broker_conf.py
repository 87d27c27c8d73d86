"""The Celery configuration by broker scheme (worker/celery.py): Redis as before, RabbitMQ with
quorum queues, dead-letter arguments and confirms. No broker is contacted."""

from __future__ import annotations

from worker.celery import QUEUES, create_app, dead_letter_queues
from worker.config.settings import Settings


def test_redis_broker_keeps_our_transport_and_its_visibility_timeout():
    conf = create_app(Settings.from_env({"REDIS_URL": "redis://store:6379/0"})).conf
    assert conf.broker_transport == "worker.runtime.broker:Transport"
    assert conf.broker_transport_options["visibility_timeout"] == 30.0
    assert "confirm_publish" not in conf.broker_transport_options
    assert not conf.task_queues


def test_rabbitmq_broker_quorum_queues_dead_letters_and_confirms():
    settings = Settings.from_env({"VEXORA_BROKER_URL": "amqp://u:p@rabbit:5672/v",
                                  "VEXORA_BROKER_DELIVERY_LIMIT": "7"})
    app = create_app(settings)
    conf = app.conf
    assert conf.broker_transport is None and conf.result_backend == settings.redis_url
    assert conf.broker_transport_options == {"confirm_publish": True}  # no visibility timeout
    assert conf.task_default_queue_type == "quorum" and conf.worker_detect_quorum_queues
    queues = {q.name: q for q in conf.task_queues}
    assert sorted(queues) == sorted(QUEUES)
    for name, queue in queues.items():
        assert queue.exchange.type == "topic"  # Celery's native delayed delivery needs it
        assert queue.queue_arguments == {
            "x-queue-type": "quorum", "x-delivery-limit": 7, "x-dead-letter-exchange": "vexora.dead",
            "x-dead-letter-routing-key": name, "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish"}
    assert {q.name: q.routing_key for q in dead_letter_queues()} == {f"{n}.dead": n for n in QUEUES}
    assert "DeadLetterQueues" in {getattr(s, "__name__", "") for s in app.steps["consumer"]}
