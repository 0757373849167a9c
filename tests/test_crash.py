"""kill -9 at many moments of a running writer: the store always opens with its counted rows, and reopens.

(scripts/crash_test.py runs the same check hundreds of times; here a dozen kill points keep the suite quick.)
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import imgstore
from imgstore.writer import ImageIndexer

WRITER = r"""
import sys, numpy as np
from imgstore.writer import ImageIndexer
out, buf = sys.argv[1], int(sys.argv[2])
img = np.arange(16 * 16 * 3, dtype=np.uint8).reshape(16, 16, 3)
print("ready", flush=True)
with ImageIndexer(out, size=(16, 16), buffer_size=buf, attrs={"class_names": ["a", "b"]}) as ix:
    i = 0
    while True:
        ix.add(f"d/{i:07d}.png", img, label=i % 2, sha256=i.to_bytes(32, "little"))
        if i % 7 == 0:
            ix.skip(f"bad{i}.jpg", "truncated JPEG")
        i += 1
"""


@pytest.mark.parametrize("buffer", [1, 16])
def test_store_survives_kills_at_many_moments(tmp_path: Path, buffer: int) -> None:
    """Six kills per buffer size, at random moments: every counted image, name, label, digest and skipped row
    reads back right, and the store reopens to take more rows."""
    rng = random.Random(buffer)
    img = np.arange(16 * 16 * 3, dtype=np.uint8).reshape(16, 16, 3)
    for trial in range(6):
        path = tmp_path / f"k{trial}.h5"
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(buffer)], stdout=subprocess.PIPE)
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
        time.sleep(rng.uniform(0.05, 0.6))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if not path.exists():
            continue
        with imgstore.open(path) as s:
            n = len(s)
            assert not s.complete
            assert s.names == [f"d/{i:07d}.png" for i in range(n)]
            assert s.labels.tolist() == [i % 2 for i in range(n)]
            assert s.sha256 == [i.to_bytes(32, "little").hex() for i in range(n)]
            assert all((s[i] == img).all() for i in range(0, n, max(1, n // 50)))
            assert all(r == "truncated JPEG" for _, r in s.skipped)
        with ImageIndexer.reopen(path) as ix:
            ix.add("extra.png", img, label=1, sha256=bytes(32))
        with imgstore.open(path) as s:
            assert len(s) == n + 1 and s.names[-1] == "extra.png" and s.complete and s.labels[-1] == 1
