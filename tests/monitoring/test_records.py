"""Windows of the log: durations, times, and the words that describe them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from layerops.monitoring.records import Window, WindowError, parse_moment


def test_a_moment_is_a_duration_back_from_now_or_an_iso_time() -> None:
    now = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
    assert parse_moment("2h", now=now) == now - timedelta(hours=2)
    assert parse_moment(" 90s ", now=now) == now - timedelta(seconds=90)
    assert parse_moment("2026-12-01", now=now) == datetime(2026, 12, 1, tzinfo=UTC)
    assert parse_moment("2026-12-01T08:00+01:00") == datetime(2026, 12, 1, 7, 0, tzinfo=UTC)
    for bad in ("2 hours", "0h", "h", "yesterday"):
        with pytest.raises(WindowError):
            parse_moment(bad, now=now)


def test_a_window_refuses_an_empty_range_and_describes_itself() -> None:
    start = datetime(2026, 12, 3, 8, 0, tzinfo=UTC)
    with pytest.raises(WindowError, match="starts"):
        Window(since=start, until=start)
    with pytest.raises(WindowError, match="at least 1"):
        Window(last=0)
    assert Window(last=10, since=start).describe() == "last 10 rows since 2026-12-03 08:00:00 UTC"
    assert Window().describe() == "every logged row"
