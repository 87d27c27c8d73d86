"""Issue 23: how many deliveries one deliver task carries (pure)."""

from worker.webhooks.outbox import BATCH, BATCH_MAX, SPREAD, batch_size


def test_few_due_deliveries_keep_the_small_batch():
    assert batch_size(1) == BATCH
    assert batch_size(BATCH * SPREAD) == BATCH


def test_a_backlog_gets_bigger_batches_but_still_spreads_over_the_threads():
    assert batch_size(BATCH * SPREAD + 1) == BATCH + 1
    size = batch_size(300)
    assert BATCH < size <= BATCH_MAX and -(-300 // size) >= SPREAD


def test_never_more_than_the_biggest_batch():
    assert batch_size(10_000) == BATCH_MAX
