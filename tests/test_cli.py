"""The ingest and info commands through Typer's CliRunner: exit codes, error texts, config files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from imgstore.cli import app
from imgstore.store.reader import open_store

from conftest import encode, pattern, write

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def src(tmp_path: Path) -> Path:
    """A small folder: 5 good PNG/JPEG files in two classes and one broken file."""
    root = tmp_path / "photos"
    for i in range(5):
        fmt, ext = ("PNG", "png") if i % 2 else ("JPEG", "jpg")
        write(root / f"c{i % 2}" / f"{i}.{ext}", encode(pattern(40, 30, seed=i), fmt))
    write(root / "c0" / "broken.jpg", b"\xff\xd8\xff\xe0 not really")
    return root


def run(runner: CliRunner, *args: str):  # type: ignore[no-untyped-def]
    return runner.invoke(app, [str(a) for a in args])


def test_ingest_summary_and_store(runner: CliRunner, src: Path, tmp_path: Path) -> None:
    """A plain ingest exits 0 and prints the one-line summary."""
    out = tmp_path / "o.h5"
    result = run(runner, "ingest", src, out, "--size", "20x10", "--workers", "0", "--quiet")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().splitlines()[-1] == (
        f"ingested 5 images, skipped 1 (imgstore info --skipped {out} lists them)"
    )
    store = open_store(out)
    assert store.shape == (10, 20, 3) and len(store) == 5


def test_strict_exits_nonzero_when_something_was_skipped(runner: CliRunner, src: Path, tmp_path: Path) -> None:
    """--strict turns a skipped file into exit code 1 (the store is still written)."""
    result = run(runner, "ingest", src, tmp_path / "o.h5", "--strict", "--workers", "0", "-q", "--size", "8")
    assert result.exit_code == 1
    assert "Error: 1 file(s) were skipped and --strict was given" in result.stderr
    assert len(open_store(tmp_path / "o.h5")) == 5


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--size", "0"], "Error: invalid size 0x0: width and height must be between 1 and 65535 pixels"),
        (["--size", "abc"], "Error: invalid size 'abc': use N or WIDTHxHEIGHT, e.g. 256 or 320x240"),
        (["--resize-mode", "zoom"], "Error: invalid resize mode 'zoom': choose one of crop, stretch, pad"),
        (["--channels", "2"], "Error: invalid channels 2: use 3 (RGB) or 1 (grayscale)"),
        (["--filter", "sinc"], "Error: invalid filter 'sinc': choose one of nearest, box, bilinear, hamming, bicubic, lanczos"),
        (["--pad-color", "nope"], "Error: invalid colour 'nope': use a name (white), #rrggbb or R,G,B with values 0-255"),
        (["--workers", "-1"], "Error: invalid workers -1: give 1 or more (0 decodes in-process)"),
    ],
)  # fmt: skip
def test_invalid_options_are_clear_errors(
    runner: CliRunner, src: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    """Each invalid option: one 'Error: ...' line, exit 1, no traceback, nothing written."""
    out = tmp_path / "o.h5"
    result = run(runner, "ingest", src, out, *args)
    assert result.exit_code == 1
    assert result.stderr.strip() == message
    assert "Traceback" not in result.output
    assert not out.exists()


def test_missing_source(runner: CliRunner, tmp_path: Path) -> None:
    """A missing SRC: clear error, exit 1, no output."""
    result = run(runner, "ingest", tmp_path / "nope", tmp_path / "o.h5")
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: source folder {tmp_path / 'nope'} does not exist")
    assert not (tmp_path / "o.h5").exists()


def test_existing_output_needs_overwrite(runner: CliRunner, src: Path, tmp_path: Path) -> None:
    """An existing OUT is refused with a hint, and replaced with --overwrite."""
    out = tmp_path / "o.h5"
    out.write_text("old")
    result = run(runner, "ingest", src, out, "-q")
    assert result.exit_code == 1
    assert result.stderr.strip() == f"Error: {out} exists: pass --overwrite to replace it (or --append / --resume)"
    assert out.read_text() == "old"
    assert run(runner, "ingest", src, out, "-q", "--overwrite", "--workers", "1", "--size", "8").exit_code == 0


def test_config_file_and_cli_precedence(runner: CliRunner, src: Path, tmp_path: Path) -> None:
    """Options come from the TOML file; options on the command line win over it."""
    cfg = tmp_path / "c.toml"
    cfg.write_text('size = "24x12"\nchannels = 1\nresize-mode = "pad"\n')
    out = tmp_path / "o.h5"
    assert run(runner, "ingest", src, out, "--config", cfg, "-q", "--workers", "0").exit_code == 0
    store = open_store(out)
    assert store.shape == (12, 24, 1) and store.attrs["resize_mode"] == "pad"
    out2 = tmp_path / "o2.h5"
    assert run(runner, "ingest", src, out2, "--config", cfg, "--channels", "3", "-q", "--workers", "0").exit_code == 0
    assert open_store(out2).shape == (12, 24, 3)


def test_config_errors(runner: CliRunner, src: Path, tmp_path: Path) -> None:
    """Unknown keys, bad TOML and missing files are one-line errors naming the file."""
    bad = tmp_path / "bad.toml"
    bad.write_text("sise = 3\n")
    result = run(runner, "ingest", src, tmp_path / "o.h5", "--config", bad)
    assert result.exit_code == 1 and f"Error: config file {bad}: unknown option(s) sise; valid: size" in result.stderr
    bad.write_text("size = [\n")
    result = run(runner, "ingest", src, tmp_path / "o.h5", "--config", bad)
    assert result.exit_code == 1 and "is not valid TOML" in result.stderr
    result = run(runner, "ingest", src, tmp_path / "o.h5", "--config", tmp_path / "none.toml")
    assert result.exit_code == 1 and "does not exist" in result.stderr


@pytest.mark.parametrize("preset", sorted((ROOT / "configs").glob("*.toml")), ids=lambda p: p.name)
def test_shipped_presets_are_valid(preset: Path, runner: CliRunner, src: Path, tmp_path: Path) -> None:
    """Every preset in configs/ loads, validates and ingests."""
    result = run(runner, "ingest", src, tmp_path / "o.h5", "--config", preset, "-q", "--workers", "0")
    assert result.exit_code == 0, result.output


def test_info_text_json_and_skipped(runner: CliRunner, src: Path, tmp_path: Path) -> None:
    """info shows count, shape, chunking and attributes; --json parses; --skipped lists reasons."""
    out = tmp_path / "o.h5"
    run(runner, "ingest", src, out, "--size", "16", "-q", "--workers", "0")
    text = run(runner, "info", out)
    assert text.exit_code == 0
    assert "5 x 16x16x3 uint8" in text.stdout and "chunks      (1, 16, 16, 3)" in text.stdout
    data = json.loads(run(runner, "info", out, "--json").stdout)
    assert data["count"] == 5 and data["image_shape"] == [16, 16, 3] and data["chunks"] == [1, 16, 16, 3]
    assert data["attributes"]["imgstore_format"] == 2 and data["size_on_disk"] == out.stat().st_size
    listed = run(runner, "info", out, "--skipped").stdout
    assert "c0/broken.jpg: " in listed


def test_info_on_non_store(runner: CliRunner, tmp_path: Path) -> None:
    """info on a missing file or a non-HDF5 file is a clear error."""
    assert run(runner, "info", tmp_path / "x.h5").stderr.startswith("Error: ")
    (tmp_path / "t.h5").write_text("text")
    result = run(runner, "info", tmp_path / "t.h5")
    assert result.exit_code == 1 and "not an HDF5 file" in result.stderr


def test_every_command_has_help(runner: CliRunner) -> None:
    """Each command answers --help with its description."""
    import typer.main

    group = typer.main.get_command(app)
    for name in group.commands:  # type: ignore[attr-defined]
        result = run(runner, name, "--help")
        assert result.exit_code == 0 and "Usage" in result.stdout, name
