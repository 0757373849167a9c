"""The decode pool's bookkeeping (Schedule), without processes: order, bounded slots, retries; and, with
processes, candidates a source asks to be read in the parent."""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from imgstore.errors import BadImageError
from imgstore.options import DecodeOptions
from imgstore.pool import DecodePool, Schedule, decode_in_process
from imgstore.sources import Discovery

from conftest import encode, pattern


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


@dataclass(frozen=True)
class SplitSource:
    """Candidates ``p:N`` must be read in the parent (process ``parent``), ``w:N`` in a worker; a read in the wrong
    process fails, so the outcome shows who read what. ``p:bad`` cannot be read at all."""

    parent: int

    @property
    def label(self) -> str:
        return "split"

    def scan(self, extensions: tuple[str, ...]) -> Discovery:
        return Discovery()

    def read(self, key: str) -> bytes:
        where, n = key.split(":")
        if n == "bad":
            raise BadImageError("unreadable: gone")
        if (os.getpid() == self.parent) != (where == "p"):
            raise BadImageError(f"unreadable: {key} read in the wrong process")
        return encode(pattern(20, 16, seed=int(n)), "PNG")

    def parent_reads(self, key: str) -> bool:
        return key.startswith("p:")


def test_the_parent_reads_what_the_source_asks_and_sends_the_bytes() -> None:
    """Keys the source marks are read by the parent (its failure is that file's reason), the rest by the workers;
    outcomes come in order and equal an in-process decode of the same bytes."""
    source = SplitSource(os.getpid())
    keys = ["p:0", "w:1", "p:bad", "p:2", "w:3", "p:4", "w:5", "p:6"]
    opts = DecodeOptions(size=(10, 8))
    with DecodePool(opts, workers=2, slots=3, source=source) as pool:
        got = [(d.index, d.reason, None if d.image is None else d.image.copy()) for d in pool.imap(keys)]
    assert [i for i, _, _ in got] == list(range(len(keys)))
    assert [r for _, r, _ in got] == [None, None, "unreadable: gone", None, None, None, None, None]
    local = SplitSource(-1)  # in this process every "w:" key reads; compare pixels key by key
    for (_, _, image), key in zip(got, keys):
        if image is None:
            continue
        expected = next(iter(decode_in_process(local if key.startswith("w") else source, [key], opts)))
        assert expected.image is not None
        np.testing.assert_array_equal(image, expected.image)


def test_a_pool_never_closed_does_not_hang_the_exit(tmp_path: Path) -> None:
    """Workers ignore SIGTERM, and at exit multiprocessing terminates daemonic children with SIGTERM and joins them:
    a pool left open (a signal landing between its construction and the code that closes it) once hung an ingest's
    exit for good. Every pool still open at exit is closed first, so the process ends, its workers with it."""
    import subprocess
    import sys

    (tmp_path / "a.png").write_bytes(encode(pattern(8, 8), "PNG"))
    code = (
        "import sys\n"
        "from imgstore.options import DecodeOptions\n"
        "from imgstore.pool import DecodePool\n"
        "from imgstore.sources import open_source\n"
        f"pool = DecodePool(DecodeOptions(size=8), 2, source=open_source({str(tmp_path)!r}))\n"
        "print(' '.join(str(w.proc.pid) for w in pool._workers), flush=True)\n"
        "sys.exit(0)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    pids = [int(p) for p in done.stdout.split()]
    assert len(pids) == 2
    for pid in pids:  # the workers are gone too
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()
