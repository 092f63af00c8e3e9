"""bench/load.py's bookkeeping, without a server: a load run is only proof if its checks
catch what they claim to (gaps, reorders, duplicate frames, lost and doubly stored messages,
acks that disagree with the log, stalls)."""

from __future__ import annotations

import time

from bench.load import (
    Ack,
    AckLog,
    AckRecord,
    Options,
    Period,
    Reader,
    Run,
    Scenario,
    Tally,
    failure_from,
    join_points,
    runs,
    seq_of,
)


def message(seq: int, key: str, id_: str | None = None) -> dict[str, object]:
    return {"seq": seq, "offset": f"0123456789abcdef_{seq:016d}", "data": {"k": key}, "id": id_}


def test_offsets_and_runs() -> None:
    assert seq_of("-1") == 0
    assert seq_of("019ad0392f80a540_0000000000000043") == 43
    assert runs([7, 1, 2, 3, 9, 10]) == [(1, 3), (7, 7), (9, 10)]
    assert join_points(3) == [0.3, 0.5, 0.7]
    assert join_points(1) == [0.5]


def test_a_reader_counts_gaps_reorders_and_duplicate_frames() -> None:
    reader = Reader("r", AckLog(), Tally())
    reader.set_start(0)
    for seq in (1, 2, 4, 3, 3, 5):
        reader.deliver(seq, f"k{seq}", None)
    assert (reader.gaps, reader.reordered, reader.duplicate_frames) == (1, 1, 1)
    assert reader.caught_up(5)
    reader.deliver(8, "k8", None)
    assert reader.gaps == 2 and reader.missing == {6, 7} and not reader.caught_up(8)


def test_a_reader_refuses_messages_at_or_before_its_start() -> None:
    reader = Reader("r", AckLog(), Tally())
    reader.set_start(10)
    reader.deliver(10, "k10", None)
    reader.deliver(11, "k11", None)
    assert reader.early == 1 and reader.seen == {11}


def test_live_means_acked_after_the_subscribe() -> None:
    acks = AckLog()
    now = time.monotonic()
    acks.add(AckRecord("old", 1, None, now - 2, now - 1))  # acked before the subscribe
    reader = Reader("r", acks, Tally())
    reader.set_start(0)
    reader.periods.append(Period(now - 0.5))
    reader.deliver(1, "old", None)
    assert reader.periods[0].live_at is None
    reader.deliver(2, "not acked yet", None)  # its ack comes later: after the subscribe
    assert reader.periods[0].live_at is not None and reader.live.is_set()


def test_verify_finds_lost_doubled_misplaced_and_stalled() -> None:
    run = Run("http://127.0.0.1:1", "ws://127.0.0.1:1/ws", Scenario("ws", 4, 4), Options())
    t = time.monotonic() - 10
    for key, seq in (("a", 1), ("b", 2), ("c", 3), ("lost", 4)):
        run.acks.add(AckRecord(key, seq, None, t, t + 0.01))
    # The log: "a" stored twice, "c" acked at seq 3 but stored at 5, "lost" missing, and a
    # hole at seq 4.
    log = [message(1, "a"), message(2, "b"), message(3, "a"), message(5, "c")]
    follower = Reader("joiner", run.acks, run.tally)
    follower.set_start(0)
    follower.periods.append(Period(t - 0.5))  # subscribed while the channel was written...
    result = run.verify(log, 5, [follower])  # ...and never received anything
    counts = result.counts
    assert counts.lost == 1 + 4  # "lost"; the follower never got seqs 1, 2, 3, 5
    assert counts.duplicated == 1  # the second "a"
    assert counts.gaps == 1  # the hole at seq 4
    assert counts.inconsistent == 1  # "c" was acked at seq 3, which holds "a"
    assert counts.stalled == 2  # never live while the channel was written; left behind
    assert not result.ok and result.live_never == 1


def test_a_clean_run_is_ok() -> None:
    run = Run("http://127.0.0.1:1", "ws://127.0.0.1:1/ws", Scenario("rest", 1, 2), Options())
    t = time.monotonic() - 1
    run.acks.add(AckRecord("a", 1, None, t, t + 0.01))
    run.acks.add(AckRecord("b", 2, None, t + 0.5, t + 0.51))
    follower = Reader("joiner", run.acks, run.tally)
    follower.set_start(0)
    follower.periods.append(Period(t + 0.2))
    follower.deliver(1, "a", None)
    follower.deliver(2, "b", None)
    result = run.verify([message(1, "a", "a"), message(2, "b", "b")], 2, [follower])
    assert result.ok, result.counts
    assert result.live_never == 0 and result.live_max_ms is not None


def test_retry_hints() -> None:
    assert failure_from("rate_limited", "slow down", {"retry_after_ms": 250}).retry_after_s == 0.25
    assert failure_from("rate_limited", "", {}, "2").retry_after_s == 2.0
    assert failure_from("unavailable", "", None).retry_after_s is None
    assert Ack(1, None, True).duplicate
