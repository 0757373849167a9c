"""Sharded ingest on Dask: a 2-worker LocalCluster makes the single-machine store; failed shards are retried."""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
import pytest
from test_merge import OPTIONS, assert_same_store, make_photos
from typer.testing import CliRunner

import imgstore
import imgstore.distributed
from imgstore.cli import app
from imgstore.distributed import (
    default_shards,
    ingest_dask,
    parse_address,
    shard_paths,
)
from imgstore.errors import ImgStoreError, OptionError, OutputExistsError
from imgstore.ingest import ingest
from imgstore.options import IngestOptions
from imgstore.progress import CallbackProgress

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A photo folder (30 images, 3 bad files) and its single-machine store."""
    root = tmp_path_factory.mktemp("dask")
    src = make_photos(root / "photos")
    (src / "notes.txt").write_text("not a photo")  # counted as ignored by the one walk, as a single ingest counts it
    ingest(src, root / "single.h5", OPTIONS)
    return {"src": src, "single": root / "single.h5"}


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    """A 2-worker LocalCluster of threads in this process (fast to start), reachable over TCP."""
    with distributed.LocalCluster(
        n_workers=2, processes=False, threads_per_worker=1, protocol="tcp://", dashboard_address="127.0.0.1:0"
    ) as c:
        yield c


@pytest.fixture
def client(cluster: Any) -> Iterator[Any]:
    with distributed.Client(cluster) as c:
        yield c


# A JSON object {"shard": K, "marker": PATH, "times": T, "exit": false}: the task of shard K appends a line to PATH
# and, on its first T attempts, raises (or with "exit" true kills its worker process, as a crash or an
# out-of-memory kill would). An environment variable, so it reaches the worker processes of a LocalCluster.
FAULT_ENV = "IMGSTORE_TEST_FAIL_SHARD"
run_shard = imgstore.distributed.run_shard


def flaky_run_shard(src: Any, path: str, options: IngestOptions, k: int, n: int, **kwargs: Any) -> Any:
    """:func:`imgstore.distributed.run_shard`, failing as ``FAULT_ENV`` says (run by Dask in its workers)."""
    spec = os.environ.get(FAULT_ENV)
    if spec and int(json.loads(spec)["shard"]) == k:
        cfg = json.loads(spec)
        marker = Path(cfg["marker"])
        with open(marker, "a", encoding="utf-8") as fh:
            fh.write(f"attempt pid={os.getpid()}\n")
        attempt = len(marker.read_text(encoding="utf-8").splitlines())
        if attempt <= int(cfg.get("times", 1)):
            if cfg.get("exit"):
                os._exit(70)
            raise RuntimeError(f"injected failure of shard {k} (attempt {attempt})")
    return run_shard(src, path, options, k, n, **kwargs)


def fail_shard(monkeypatch: pytest.MonkeyPatch, marker: Path, shard: int, times: int, exit: bool = False) -> None:
    """Make shard ``shard``'s task fail (or kill its worker) on its first ``times`` attempts, counted in ``marker``."""
    spec = {"shard": shard, "marker": str(marker), "times": times, "exit": exit}
    monkeypatch.setenv(FAULT_ENV, json.dumps(spec))
    monkeypatch.setattr(imgstore.distributed, "run_shard", flaky_run_shard)


def attempts(marker: Path) -> int:
    return len(marker.read_text().splitlines()) if marker.exists() else 0


# -- pure parts ---------------------------------------------------------------------------------------------------


def test_default_shards() -> None:
    """4 shards per worker thread, at least 1, at most one per file."""
    assert default_shards(2, 1000) == 8
    assert default_shards(2, 5) == 5
    assert default_shards(8, 0) == 1
    assert default_shards(0, 100) == 4


def test_shard_paths() -> None:
    """Shard files go to OUT.parts/ next to OUT, numbered so they sort in K order."""
    assert [p.as_posix() for p in shard_paths(Path("/x/photos.h5"), 2)] == [
        "/x/photos.h5.parts/photos.shard-0001-of-0002.h5",
        "/x/photos.h5.parts/photos.shard-0002-of-0002.h5",
    ]
    assert shard_paths(Path("o.h5"), 12345)[0].name == "o.shard-00001-of-12345.h5"


def test_parse_address() -> None:
    """local, local:N and scheduler addresses are accepted; anything else is refused clearly."""
    assert parse_address("local") == ("local", None)
    assert parse_address("local:3") == ("local", 3)
    assert parse_address("tcp://10.0.0.5:8786") == ("tcp://10.0.0.5:8786", None)
    assert parse_address("scheduler:8786") == ("scheduler:8786", None)
    for bad in ("local:0", "nowhere", "local:x"):
        with pytest.raises(OptionError):
            parse_address(bad)
    with pytest.raises(OptionError) as exc:
        parse_address("nowhere")
    assert str(exc.value) == (
        "invalid --dask address 'nowhere': use local, local:N (N workers on this machine) "
        "or a scheduler address such as tcp://host:8786"
    )


# -- refusals before any work -------------------------------------------------------------------------------------


def test_missing_dask_is_a_clear_error(data: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the dask extra the error says how to install it, and nothing is written."""
    monkeypatch.setitem(sys.modules, "distributed", None)
    with pytest.raises(ImgStoreError) as exc:
        ingest_dask(data["src"], tmp_path / "out.h5", OPTIONS, "local")
    assert str(exc.value) == "the --dask option needs the dask extra: pip install 'imgstore[dask]'"
    assert list(tmp_path.iterdir()) == []


def test_refusals_before_starting_a_cluster(data: dict[str, Path], tmp_path: Path) -> None:
    """--shard with --dask, a bad address and an existing OUT are refused before any cluster starts."""
    with pytest.raises(OptionError, match="--shard and --dask cannot be combined"):
        ingest_dask(data["src"], tmp_path / "out.h5", IngestOptions(shard=(1, 2)), "local")
    with pytest.raises(OptionError, match="invalid --dask address"):
        ingest_dask(data["src"], tmp_path / "out.h5", OPTIONS, "somewhere")
    (tmp_path / "out.h5").write_bytes(b"keep")
    with pytest.raises(OutputExistsError):
        ingest_dask(data["src"], tmp_path / "out.h5", OPTIONS, "local")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.h5"]


APPEND_ON_DASK = (
    "--append cannot run on Dask (a merged store is not appended to): ingest the new files into a store of their "
    "own, or merge with --copy and append on one machine"
)


def test_append_is_refused_before_any_work(data: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--append with --dask is refused with the way to get there, before dask is even imported: the store to
    append to is untouched and no shard folder appears."""
    out = tmp_path / "out.h5"
    shutil.copy(data["single"], out)
    before = out.read_bytes()
    monkeypatch.setitem(sys.modules, "distributed", None)  # refused before the cluster (or the extra) is needed
    with pytest.raises(OptionError) as exc:
        ingest_dask(data["src"], out, IngestOptions(decode=OPTIONS.decode, workers=0, append=True), "local:2")
    assert str(exc.value) == APPEND_ON_DASK
    assert out.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["out.h5"]


def test_cli_append_with_dask_is_refused(data: dict[str, Path], tmp_path: Path, cli: CliRunner) -> None:
    """`imgstore ingest SRC OUT --dask local:2 --append`: exit 1 and the library's message as one Error line."""
    out = tmp_path / "out.h5"
    shutil.copy(data["single"], out)
    before = out.read_bytes()
    result = cli.invoke(app, ["ingest", str(data["src"]), str(out), "--dask", "local:2", "--append", "-q"])
    assert result.exit_code == 1 and result.stderr == f"Error: {APPEND_ON_DASK}\n"
    assert out.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["out.h5"]


# -- runs ---------------------------------------------------------------------------------------------------------


def test_scheduler_address_matches_single_ingest(data: dict[str, Path], tmp_path: Path, cluster: Any) -> None:
    """Joining a running scheduler by address: 8 shards over 2 workers merge into the single-machine store."""
    totals: list[int] = []
    seen: list[int] = []
    out = tmp_path / "out.h5"
    address = cluster.scheduler_address
    report = ingest_dask(data["src"], out, OPTIONS, address, progress=CallbackProgress(seen.append, on_start=totals.append))
    assert cluster.scheduler_address.startswith("tcp://")
    assert report.dask_workers == 2 and len(report.shards) == 8 and report.virtual
    assert totals == [33] and sum(seen) == 33 and len(seen) == 8
    assert report.count == 30 and len(report.skipped) == 3 and not report.decoded_in_process and report.note is None
    assert report.summary == (
        f"ingested 30 images, skipped 3 (imgstore info --skipped {out} lists them), 1 other file ignored: .txt 1"
    )
    assert_same_store(out, data["single"])
    with imgstore.open(out) as merged:
        assert merged.ignored == {".txt": 1}  # the merged store records what the walk passed over, as shards do
    assert sorted((tmp_path / "out.h5.parts").iterdir()) == report.shards


def test_local_process_cluster_retries_a_failed_shard(
    data: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """local:2 (2 worker processes): shard 2 fails on its first attempt, Dask retries it, the store is identical."""
    marker = tmp_path / "attempts.txt"
    fail_shard(monkeypatch, marker, shard=2, times=1)
    report = ingest_dask(data["src"], tmp_path / "out.h5", OPTIONS, "local:2", shards=3)
    assert attempts(marker) == 2
    assert report.dask_workers == 2 and len(report.shards) == 3
    assert not report.decoded_in_process  # our LocalCluster's workers may start imgstore's decoder process
    assert_same_store(tmp_path / "out.h5", data["single"])


def test_worker_that_dies_is_replaced(data: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker process killed while running shard 1 (crash, OOM kill): Dask runs the shard again elsewhere."""
    marker = tmp_path / "attempts.txt"
    fail_shard(monkeypatch, marker, shard=1, times=1, exit=True)
    report = ingest_dask(data["src"], tmp_path / "out.h5", OPTIONS, "local:2", shards=2, retries=0)
    assert attempts(marker) == 2
    assert_same_store(tmp_path / "out.h5", data["single"])
    assert len(report.shards) == 2


def test_shard_failing_every_attempt(
    data: dict[str, Path], tmp_path: Path, client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A shard failing after its retries names itself; finished shards stay; a rerun then succeeds."""
    marker = tmp_path / "attempts.txt"
    fail_shard(monkeypatch, marker, shard=2, times=99)
    out = tmp_path / "out.h5"
    parts = tmp_path / "out.h5.parts"
    with pytest.raises(ImgStoreError) as exc:
        ingest_dask(data["src"], out, OPTIONS, client, shards=4, retries=1)
    assert str(exc.value) == (
        "shard 2/4 failed after 2 attempts (shard 2/4: RuntimeError: injected failure of shard 2 (attempt 2)). "
        f"The 3 finished shard(s) are kept in {parts}; rerun the command to ingest every shard again, or ingest "
        f"the failed one by hand (imgstore ingest SRC {parts}/out.shard-0002-of-0004.h5 --shard 2/4 with the same "
        f"options) and join them with imgstore merge {out} {parts}/*.h5"
    )
    assert attempts(marker) == 2
    assert not out.exists()
    assert sorted(p.name for p in parts.iterdir()) == [f"out.shard-000{k}-of-0004.h5" for k in (1, 3, 4)]
    monkeypatch.delenv(FAULT_ENV)
    ingest_dask(data["src"], out, OPTIONS, client, shards=4)
    assert_same_store(out, data["single"])


def test_no_retries(data: dict[str, Path], tmp_path: Path, client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """retries=0: one failure stops the shard."""
    marker = tmp_path / "attempts.txt"
    fail_shard(monkeypatch, marker, shard=1, times=1)
    with pytest.raises(ImgStoreError, match=r"^shard 1/2 failed after 1 attempt \(shard 1/2: RuntimeError"):
        ingest_dask(data["src"], tmp_path / "out.h5", OPTIONS, client, shards=2, retries=0)
    assert attempts(marker) == 1


def test_copy_makes_one_file_and_removes_the_shards(data: dict[str, Path], tmp_path: Path, client: Any) -> None:
    """copy=True: a self-contained OUT, no parts folder left."""
    report = ingest_dask(data["src"], tmp_path / "out.h5", OPTIONS, client, shards=3, copy=True)
    assert not report.virtual and report.shards == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.h5"]
    with h5py.File(tmp_path / "out.h5") as f:
        assert not f["images"].is_virtual
    assert_same_store(tmp_path / "out.h5", data["single"])


def test_overwrite_replaces_store_and_stale_shards(data: dict[str, Path], tmp_path: Path, client: Any) -> None:
    """A rerun with overwrite and another N replaces OUT and removes the previous run's shard files."""
    out = tmp_path / "out.h5"
    ingest_dask(data["src"], out, OPTIONS, client, shards=5)
    (tmp_path / "out.h5.parts" / ".out.shard-0001-of-0002.h5.deadbeef.tmp").write_bytes(b"lost attempt")
    options = IngestOptions(decode=OPTIONS.decode, workers=0, overwrite=True)
    report = ingest_dask(data["src"], out, options, client, shards=2)
    assert sorted((tmp_path / "out.h5.parts").iterdir()) == report.shards and len(report.shards) == 2
    assert_same_store(out, data["single"])


def test_daemonic_workers_decode_in_process(
    data: dict[str, Path], tmp_path: Path, client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In a daemonic Dask worker (which may not start processes) a task decodes in-process, and says so."""
    import multiprocessing

    class Daemonic:
        daemon = True

    monkeypatch.setattr(multiprocessing, "current_process", lambda: Daemonic())
    report = ingest_dask(data["src"], tmp_path / "out.h5", OPTIONS, client, shards=2)
    assert report.decoded_in_process and "DASK_DISTRIBUTED__WORKER__DAEMON=False" in report.note
    assert_same_store(tmp_path / "out.h5", data["single"])


def test_shards_written_where_this_machine_cannot_see_them(
    data: dict[str, Path], tmp_path: Path, client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Workers whose OUT folder is not the shared one: the error says the storage must be shared."""
    import imgstore.distributed as dist

    def lost(src: str, path: str, options: IngestOptions, k: int, n: int, **kw: Any) -> dist.ShardResult:
        return dist.ShardResult(k, path, 0, 0, 0, False)  # "wrote" the shard on a disk of its own

    monkeypatch.setattr(dist, "run_shard", lost)
    with pytest.raises(ImgStoreError) as exc:
        ingest_dask(data["src"], tmp_path / "out.h5", OPTIONS, client, shards=2)
    assert str(exc.value) == (
        f"the workers wrote 2 shard file(s) that this machine does not see, e.g. "
        f"{tmp_path}/out.h5.parts/out.shard-0001-of-0002.h5: the folder of {tmp_path}/out.h5 must be shared storage "
        "that every worker and this machine see at the same path"
    )


def test_cli_dask_local_with_labels_matches_single_ingest(data: dict[str, Path], tmp_path: Path, cli: CliRunner) -> None:
    """`imgstore ingest SRC OUT --dask local:2 --labels folder`: the merged store equals a single-machine ingest,
    labels and class names included."""
    single = tmp_path / "single.h5"
    ingest(data["src"], single, IngestOptions(decode=OPTIONS.decode, labels="folder", workers=0))
    out = tmp_path / "dask.h5"
    result = cli.invoke(
        app, ["ingest", str(data["src"]), str(out), "--dask", "local:2", "--shards", "3", "--labels", "folder",
              "--size", "16x12", "-q"],
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().splitlines()[-1].startswith("ingested 30 images, skipped 3")
    assert_same_store(out, single)
    import imgstore

    merged, plain = imgstore.open(out), imgstore.open(single)
    assert merged.class_names == plain.class_names == ["bird", "cat", "dog"]
    assert merged.labels.tolist() == plain.labels.tolist()


def test_cli_shards_without_dask_is_refused(data: dict[str, Path], tmp_path: Path, cli: CliRunner) -> None:
    """--shards means nothing without --dask: a clear error."""
    result = cli.invoke(app, ["ingest", str(data["src"]), str(tmp_path / "o.h5"), "--shards", "3"])
    assert result.exit_code == 1 and result.stderr.strip() == "Error: --shards applies only with --dask"
