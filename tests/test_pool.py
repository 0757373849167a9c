"""The decode pool's bookkeeping (Schedule), without processes: order, bounded slots, retries."""

from __future__ import annotations

import random

import pytest

from imgstore.pool import Schedule


def ok(seq: int) -> tuple[None, bytes, int]:
    return None, bytes([seq % 256]), seq


def test_results_come_out_in_input_order_whatever_order_they_finish() -> None:
    """Results finished out of order are handed out in input order, each with the slot its task was given."""
    s = Schedule(5, n_slots=5)
    sent = [s.take() for _ in range(5)]
    assert [seq for seq, _ in sent] == [0, 1, 2, 3, 4]
    assert len({slot for _, slot in sent}) == 5
    for seq in (3, 1, 4):
        s.finish(seq, ok(seq))
    assert s.ready() is None  # 0 has not come back
    s.finish(0, ok(0))
    out = []
    while (item := s.ready()) is not None:
        out.append(item)
        s.handed_out()
    assert [seq for seq, _, _ in out] == [0, 1]
    assert [slot for _, slot, _ in out] == [dict(sent)[0], dict(sent)[1]]
    s.finish(2, ok(2))
    while (item := s.ready()) is not None:
        out.append(item)
        s.handed_out()
    assert [seq for seq, _, _ in out] == [0, 1, 2, 3, 4] and s.finished


def test_no_more_tasks_in_flight_than_slots() -> None:
    """With every slot taken, nothing new is sent until the consumer has taken a result."""
    s = Schedule(10, n_slots=3)
    for _ in range(3):
        s.take()
    assert not s.has_work()
    s.finish(1, ok(1))
    assert not s.has_work()  # 1 came back but is not handed out: 0 is still missing
    s.finish(0, ok(0))
    assert s.ready() is not None
    s.handed_out()
    assert s.has_work()
    assert s.take()[0] == 3 and not s.has_work()


@pytest.mark.parametrize("seed", range(20))
def test_any_interleaving_hands_out_every_result_once_in_order(seed: int) -> None:
    """Random sends, deaths (tasks given back), finishes and hand-outs: every result once, in order, slots bounded."""
    rng = random.Random(seed)
    n, slots = 40, 4
    s = Schedule(n, slots)
    in_flight: list[int] = []
    out: list[int] = []
    steps = 0
    while not s.finished:
        steps += 1
        assert steps < 10_000
        action = rng.random()
        if action < 0.4 and s.has_work():
            seq, slot = s.take()
            assert 0 <= slot < slots
            in_flight.append(seq)
        elif action < 0.5 and in_flight:
            lost = rng.sample(in_flight, rng.randint(1, len(in_flight)))
            for seq in lost:
                in_flight.remove(seq)
            s.give_back(lost)
        elif action < 0.8 and in_flight:
            seq = in_flight.pop(rng.randrange(len(in_flight)))
            s.finish(seq, ok(seq))
        elif (item := s.ready()) is not None:
            seq, _, outcome = item
            assert outcome == ok(seq)
            out.append(seq)
            s.handed_out()
        assert len(s.slot_of) <= slots
    assert out == list(range(n))


def test_given_back_tasks_go_out_first_with_their_slot() -> None:
    """Tasks of a worker that died before starting them are sent again before new ones, keeping their slot."""
    s = Schedule(6, n_slots=6)
    sent = dict(s.take() for _ in range(4))
    s.give_back([3, 2])
    assert s.take() == (2, sent[2])
    assert s.take() == (3, sent[3])
    assert s.take()[0] == 4
