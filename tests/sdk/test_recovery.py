"""The pure recovery core, driven by scripted event sequences (no I/O)."""

from __future__ import annotations

import pytest

from switchboard.client import EpochMismatchError, Message, Recovery

EPOCH = "0000018f00000001"
OTHER_EPOCH = "0000019000000002"


def off(seq: int, epoch: str = EPOCH) -> str:
    return f"{epoch}_{seq:016d}"


def msg(seq: int, epoch: str = EPOCH) -> Message:
    return Message(channel="runs:1", seq=seq, offset=off(seq, epoch), epoch=epoch, data=seq)


def drain(recovery: Recovery) -> list[int]:
    out = []
    while (m := recovery.next_ready()) is not None:
        out.append(m.seq)
    return out


def test_in_order_messages_are_delivered_and_position_follows() -> None:
    r = Recovery("runs:1", "-1")
    assert r.position is None and r.resume_from() == "-1"
    r.subscribed(EPOCH, off(0), off(3))
    for seq in (1, 2, 3):
        r.receive(msg(seq))
    assert drain(r) == [1, 2, 3]
    assert r.position == off(3)
    assert r.resume_from() == off(3)
    assert r.caught_up


def test_duplicates_at_the_replay_live_boundary_are_dropped() -> None:
    r = Recovery("runs:1", "-1")
    r.subscribed(EPOCH, off(0), off(2))
    for seq in (1, 2, 2, 1, 3, 3):
        r.receive(msg(seq))
    assert drain(r) == [1, 2, 3]
    assert r.stats.duplicates == 3


def test_a_gap_is_reported_and_later_messages_wait_for_it() -> None:
    r = Recovery("runs:1", "-1")
    r.subscribed(EPOCH, off(0), off(0))
    r.receive(msg(1))
    assert drain(r) == [1]
    r.receive(msg(4))
    r.receive(msg(5))
    assert drain(r) == []  # 4 and 5 are held back until 2 and 3 arrive
    gap = r.gap()
    assert gap is not None and gap.from_offset == off(1) and gap.until_seq == 3
    # History answers with the missing range (and an overlap, as a page may).
    for seq in (2, 3, 4):
        r.receive(msg(seq))
    assert r.gap() is None
    assert drain(r) == [2, 3, 4, 5]
    assert r.position == off(5)


def test_reconnect_mid_replay_resumes_from_the_last_message_handed_over() -> None:
    r = Recovery("runs:1", off(10))
    assert r.resume_from() == off(10)  # a stored offset is usable before `subscribed`
    r.subscribed(EPOCH, off(10), off(20))
    for seq in (11, 12, 13):
        r.receive(msg(seq))
    assert r.next_ready() is not None  # the app took 11 only, then the socket died
    r.receive(msg(15))  # an arrival beyond a hole, still buffered when the socket died
    assert r.resume_from() == off(11)
    # New socket: the server replays from 11; everything buffered is dropped and resent.
    r.subscribed(EPOCH, off(11), off(20))
    assert r.gap() is None and r.stats.resubscribes == 1
    for seq in range(12, 21):
        r.receive(msg(seq))
    assert drain(r) == list(range(12, 21))
    assert r.caught_up


def test_epoch_change_on_resubscribe_is_an_error_not_a_silent_jump() -> None:
    r = Recovery("runs:1", "-1")
    r.subscribed(EPOCH, off(0), off(1))
    r.receive(msg(1))
    drain(r)
    with pytest.raises(EpochMismatchError) as info:
        r.subscribed(OTHER_EPOCH, off(0, OTHER_EPOCH), "-1")
    assert info.value.epoch == OTHER_EPOCH
    assert r.position == off(1)  # nothing was moved onto the new log


def test_a_message_from_another_epoch_is_an_error() -> None:
    r = Recovery("runs:1", "now")
    r.subscribed(EPOCH, off(5), off(5))
    with pytest.raises(EpochMismatchError):
        r.receive(msg(1, OTHER_EPOCH))


def test_now_resolves_to_the_head_the_server_reports() -> None:
    r = Recovery("runs:1", "now")
    r.subscribed(EPOCH, off(41), off(41))
    assert r.position == off(41) and r.caught_up
    r.receive(msg(42))
    assert drain(r) == [42]


def test_a_paused_replay_keeps_what_is_buffered_up_to_where_it_resumes() -> None:
    r = Recovery("runs:1", "-1")
    r.subscribed(EPOCH, off(0), off(300))
    for seq in range(1, 101):
        r.receive(msg(seq))
    assert r.next_ready() is not None  # the application took 1 only
    # The server paused at 100 and the client subscribed again from there: 2..100 stay.
    r.subscribed(EPOCH, off(100), off(300))
    assert r.gap() is None
    for seq in range(101, 301):
        r.receive(msg(seq))
    assert drain(r) == list(range(2, 301)) and r.stats.duplicates == 0


def test_a_reported_head_past_the_last_message_is_a_gap_until_filled() -> None:
    r = Recovery("runs:1", "-1")
    r.subscribed(EPOCH, off(0), off(2))
    r.receive(msg(1))
    r.receive(msg(2))
    assert drain(r) == [1, 2]
    r.head_reported(off(2))  # nothing missing
    assert r.gap() is None
    r.head_reported(off(4))  # 3 and 4 were lost live
    gap = r.gap()
    assert gap is not None and gap.reported and (gap.from_offset, gap.until_seq) == (off(2), 4)
    for seq in (3, 4):  # read from history
        r.receive(msg(seq))
    assert drain(r) == [3, 4] and r.gap() is None
    r.note_gap_filled(gap.reported)
    assert r.stats.tail_gaps == 1 and r.stats.gaps == 0


def test_heads_that_say_nothing_is_missing_are_ignored() -> None:
    r = Recovery("runs:1", "-1")
    r.head_reported(off(9))  # before `subscribed`: ignored
    r.subscribed(EPOCH, off(0), off(1))
    r.receive(msg(1))
    r.receive(msg(2))  # buffered, not yet taken
    r.head_reported(off(2))  # covered by what is buffered
    r.head_reported("-1")  # deleted or empty: nothing to fetch
    assert drain(r) == [1, 2] and r.gap() is None
    r.head_reported(off(3, OTHER_EPOCH))  # another log: history will say how
    gap = r.gap()
    assert gap is not None and gap.reported and gap.until_seq == 3
    r.drop_reported_head()
    assert r.gap() is None
