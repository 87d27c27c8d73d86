"""``jst_day`` keeps the day's bounds between calls: its answer must still be the JST date of
every instant, at midnight's edges and when times jump back and forth."""

from datetime import datetime, timedelta, timezone

from worker.store.jobs import jst_day

JST = timezone(timedelta(hours=9))


def expected(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, JST).strftime("%Y-%m-%d")


def test_the_day_at_midnights_edges_and_after_jumps():
    midnight = int(datetime(2026, 12, 8, tzinfo=JST).timestamp() * 1000)
    for ms in (midnight - 1, midnight, midnight + 1, midnight + 86_399_999, midnight + 86_400_000,
               midnight - 86_400_000, 0, midnight, 253402000000000, midnight - 1):
        assert jst_day(ms) == expected(ms), ms
    assert jst_day(midnight - 1) == "2026-12-07" and jst_day(midnight) == "2026-12-08"
