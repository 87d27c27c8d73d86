"""The wiring: ``wiring.Runtime`` builds every service of a process once, on first use, and hands
each use case what it needs; the Celery plumbing beside it (``consumer``: batched task events;
``broker``: kombu's Redis channel repaired; ``deadletters``: RabbitMQ's dead-letter queues).
``worker.celery`` (the app) belongs to this layer too.
"""
