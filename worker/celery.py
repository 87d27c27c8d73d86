"""The Celery application (``celery -A worker ...``), configured as docs/design.md §Queues and tasks says.

JSON only on the broker, late acknowledgement, a message that dies with its worker goes back on
the queue, one message prefetched per worker thread, task events on for Flower. Messages carry a
``tradeNo`` (or, for callbacks, the verified callback fields) — never payer data.
"""

from __future__ import annotations

import logging

import celery
from celery import Celery, bootsteps, signals
from celery.utils.log import mlevel
from kombu import Exchange, Queue

from worker import logs
from worker.config.redis_url import is_sentinel
from worker.config.settings import Settings
from worker.config.startup import at_import, fewer_collections
from worker.domain.errors import ConfigurationError

__all__ = ["app", "create_app", "CHECKOUT_QUEUE", "CALLBACK_QUEUE", "RECONCILE_QUEUE", "WEBHOOK_QUEUE"]

CHECKOUT_QUEUE = "checkout"
CALLBACK_QUEUE = "callbacks"
# its own queue: a backlog of checkouts must not hold a pass back until it expires
RECONCILE_QUEUE = "reconcile"
# its own queue too: a slow receiver never delays checkouts
WEBHOOK_QUEUE = "webhooks"


def create_app(settings: Settings | None = None) -> Celery:
    settings = settings or Settings.from_env()
    celery_app = Celery("vexora", include=["worker.tasks"])
    broker_sentinel = is_sentinel(settings.celery_broker_url)
    # Sentinel: every connection asks the Sentinels for the master, the broker's and the result
    # backend's each from its own options (celery#10119: the backend does not read the broker's)
    sentinel = {"master_name": settings.redis_sentinel_master,
                "sentinel_kwargs": {"socket_connect_timeout": 3, "socket_timeout": 3,
                                    **({"password": settings.redis_sentinel_password}
                                       if settings.redis_sentinel_password else {})}}
    celery_app.conf.update(
        broker_url=settings.celery_broker_url,
        result_backend=settings.redis_url,
        result_backend_transport_options=sentinel if settings.sentinel else {},
        # a channel error (a demoted master answering READONLY, celery#7946) reconnects instead
        # of failing the publish
        broker_channel_error_retry=True,
        result_expires=24 * 3600,
        task_ignore_result=True,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_send_task_events=settings.task_events,
        # task events go out in one broker message per 0.1 s, not one per event or two
        worker_consumer="worker.runtime.consumer:Consumer",
        # No task-sent events: a producer's event carries its own repr of the arguments, which for
        # vexora.checkout.enqueue is the payer's data; workers' events show only the tradeNo.
        task_send_sent_event=False,
        task_default_queue=CHECKOUT_QUEUE,
        task_routes={
            "vexora.checkout.*": {"queue": CHECKOUT_QUEUE},
            "vexora.reconcile": {"queue": RECONCILE_QUEUE},
            "vexora.callback.*": {"queue": CALLBACK_QUEUE},
            "vexora.webhooks.*": {"queue": WEBHOOK_QUEUE},
        },
        broker_connection_timeout=3,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=True,
        beat_schedule={
            "webhooks": {
                "task": "vexora.webhooks.dispatch",
                "schedule": settings.webhook_dispatch_interval,
                "options": {"expires": max(1.0, settings.webhook_dispatch_interval)},
            },
            "reconcile": {
                "task": "vexora.reconcile",
                "schedule": settings.reconcile_interval,
                # a pass that could not start in time is replaced by the next one, not queued up
                "options": {"expires": settings.reconcile_interval},
            },
        },
        enable_utc=True,
        timezone="Asia/Tokyo",
    )
    celery_app.conf.update(_rabbitmq_conf(settings) if settings.broker_is_rabbitmq
                           else _redis_conf(settings, sentinel if broker_sentinel else None))
    if settings.broker_is_rabbitmq:
        celery_app.steps["consumer"].add(DeadLetterQueues)
    _refuse_other_redis(celery_app, settings)
    return celery_app


def _redis_conf(settings: Settings, sentinel: dict | None) -> dict:
    """The Redis broker: ``sentinel`` (the Sentinel options) when VEXORA_BROKER_URL, or REDIS_URL,
    lists Sentinels."""
    return {
        "broker_transport": "worker.runtime.broker:SentinelTransport" if sentinel else "worker.runtime.broker:Transport",
        # Twice the lease (Settings.redelivery_after): a dead worker's message comes back once its
        # lease has run out; swept often enough that it comes back soon after that.
        "broker_transport_options": {
            "visibility_timeout": settings.redelivery_after,
            "unacked_restore_interval": max(1, min(5, int(settings.redelivery_after / 8))),
            "unacked_restore_throttle": 1,
            "socket_connect_timeout": 3,
            "socket_timeout": 10,
            **(sentinel or {}),
        },
    }


# -- RabbitMQ (VEXORA_BROKER_URL=amqp://...) -------------------------------------------------------
QUEUES = (CHECKOUT_QUEUE, CALLBACK_QUEUE, RECONCILE_QUEUE, WEBHOOK_QUEUE)
DEAD_LETTER_EXCHANGE = "vexora.dead"


def dead_letter_queue(queue: str) -> str:
    """Where RabbitMQ puts a message of ``queue`` it gives up on (``checkout`` -> ``checkout.dead``)."""
    return f"{queue}.dead"


def rabbitmq_queues(delivery_limit: int) -> list[Queue]:
    """Our four queues as quorum queues (replicated, fsynced before a publish is confirmed).

    A message delivered ``delivery_limit`` times without an acknowledgement (its workers died
    each time, or rejected it) is dead-lettered to ``<queue>.dead``, never dropped: the limit is
    set here so RabbitMQ 3.x (no limit by default) and 4.x (20 by default, then dropped unless a
    dead-letter exchange is set) behave alike, and dead-lettering is at-least-once (RabbitMQ
    keeps the message until the dead-letter queue confirmed it; that needs ``reject-publish``
    overflow). Expired messages (beat's ticks, ``expires``) are dead-lettered too.
    Each queue has a topic exchange of its own name, so that Celery's native delayed delivery
    (a task retried with a countdown) can route back to it.
    """
    return [Queue(name, Exchange(name, type="topic", durable=True), routing_key=name, durable=True,
                  queue_arguments={
                      "x-queue-type": "quorum",
                      "x-delivery-limit": delivery_limit,
                      "x-dead-letter-exchange": DEAD_LETTER_EXCHANGE,
                      "x-dead-letter-routing-key": name,
                      "x-dead-letter-strategy": "at-least-once",
                      "x-overflow": "reject-publish",
                  })
            for name in QUEUES]


def dead_letter_queues() -> list[Queue]:
    """``<queue>.dead``: durable queues nobody consumes; ``vexora-checkout dead-letters`` reads them.

    Classic, not quorum: reading a dead letter and giving it back must not count towards a
    delivery limit (RabbitMQ 4 gives every quorum queue one), or listing them would drop them.
    """
    exchange = Exchange(DEAD_LETTER_EXCHANGE, type="direct", durable=True)
    return [Queue(dead_letter_queue(name), exchange, routing_key=name, durable=True,
                  queue_arguments={"x-queue-type": "classic"}) for name in QUEUES]


def _rabbitmq_conf(settings: Settings) -> dict:
    return {
        "broker_transport": None,  # from the URL: amqp -> py-amqp
        "task_default_queue_type": "quorum",
        "task_queues": rabbitmq_queues(settings.broker_delivery_limit),
        "task_create_missing_queues": False,  # every route names one of the queues above
        # quorum queues: per-consumer prefetch (no global QoS), Celery's own detection
        "worker_detect_quorum_queues": True,
        # a publish returns once RabbitMQ has the message (fsynced, in a quorum queue), or raises
        "broker_transport_options": {"confirm_publish": True},
        # a dead connection (either side) is noticed within a minute; RabbitMQ then redelivers the
        # worker's unacknowledged messages at once: no visibility timeout
        "broker_heartbeat": 30,
    }


class DeadLetterQueues(bootsteps.StartStopStep):
    """Worker (consumer) step: declare the dead-letter exchange and queues on every connection, so
    a message over its delivery limit always has somewhere to go."""

    requires = ("celery.worker.consumer.connection:Connection",)

    def start(self, c) -> None:
        channel = c.connection.default_channel
        for queue in dead_letter_queues():
            queue.bind(channel).declare()


def _refuse_other_redis(celery_app: Celery, settings: Settings) -> None:
    """Celery lets CELERY_BROKER_URL, CELERY_BROKER_READ_URL, CELERY_BROKER_WRITE_URL and
    CELERY_RESULT_BACKEND in the environment (``celery -b`` sets the first), or a
    CELERY_CONFIG_MODULE, win over the configuration above. ``Settings.from_env`` refuses the
    variables it is given; this catches a process whose settings came from elsewhere."""
    conf = celery_app.conf
    wanted = {"broker_url": settings.celery_broker_url, "broker_read_url": settings.celery_broker_url,
              "broker_write_url": settings.celery_broker_url, "result_backend": settings.redis_url}
    other = sorted(key for key, value in wanted.items() if getattr(conf, key) != value)
    if other:  # the URLs are not shown: they may carry a Redis password
        raise ConfigurationError(
            "invalid configuration:\n  Celery's " + ", ".join(other) + " would differ from the settings' "
            "(set by a CELERY_* environment variable or config module): set VEXORA_BROKER_URL or "
            "REDIS_URL instead", problems={"CELERY_*": [f"{key} differs from the settings'" for key in other]})


# -- logs: Celery's own format never installed (worker.logs) ------------------------------------
@signals.setup_logging.connect
def _log_lines(loglevel=None, **_kwargs) -> None:
    """Worker and beat: any receiver of this signal stops Celery configuring logging itself (root,
    task loggers, stdout redirection); the lines come from worker.logs instead.

    Celery's own line per task received and per task succeeded (two lines a job, a sixth of a
    worker's CPU per job with the job's own state changes; BENCHMARKS.md §7) are left out unless
    ``VEXORA_LOG_TASKS`` or DEBUG: Flower's task events and the job's history say the same. A
    failed, retried or rejected task is still logged (WARNING and above). Celery decides whether
    to write them when it builds a task's tracer and the consumer's strategies, after this."""
    settings = Settings.from_env()
    level = loglevel or logging.INFO
    logs.configure(settings.log_format, level)
    quiet = not settings.log_tasks and mlevel(level) > logging.DEBUG
    for name in _PER_TASK_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING if quiet else logging.NOTSET)


# the loggers of Celery's "Task ... received" and "Task ... succeeded in ..." lines
_PER_TASK_LOGGERS = ("celery.app.trace", "celery.worker.strategy")


@signals.celeryd_init.connect
def _worker_lines_from_the_start(instance=None, options=None, **_kwargs) -> None:
    """A worker's first lines: configured here already, because Celery checks its privileges (and
    warns, as root) right after this signal, before ``setup_logging``; warnings become log lines.
    And no banner: the worker prints it straight to stdout, many lines between the log's; the same
    facts go out as one event once the worker is set up (below). Celery reads ``quiet`` later."""
    logs.configure(Settings.from_env().log_format, mlevel((options or {}).get("loglevel") or logging.INFO))
    logging.captureWarnings(True)
    if instance is not None:
        instance.quiet = True


@signals.celeryd_after_setup.connect
def _starting(sender=None, instance=None, **_kwargs) -> None:
    queues = sorted(instance.app.amqp.queues.consume_from) if instance is not None else []
    pool = getattr(instance, "pool_cls", None)  # a class by now: celery.concurrency.thread.TaskPool
    logs.event(logging.getLogger("vexora.worker"), logging.INFO, "worker_starting", hostname=sender,
               queues=",".join(queues), pool=getattr(pool, "__module__", str(pool)).rsplit(".", 1)[-1],
               concurrency=getattr(instance, "concurrency", None), celery=celery.__version__)


@signals.worker_ready.connect
def _fewer_collections(**_kwargs) -> None:
    """The worker is set up: the garbage collector leaves what it built alone (startup.py)."""
    fewer_collections()


app = at_import(create_app)
