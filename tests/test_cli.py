"""The ingest and info commands through Typer's CliRunner: exit codes, error texts, config files; and every
command's help and README entry."""

from __future__ import annotations

import inspect
import json
import re
from pathlib import Path

import pytest
import typer.main
from typer.core import TyperOption
from typer.testing import CliRunner

from imgstore.cli import EXTENSIONS_DEFAULT, app
from imgstore.options import DecodeOptions, IngestOptions, default_workers
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


def run(cli: CliRunner, *args: str):  # type: ignore[no-untyped-def]
    return cli.invoke(app, [str(a) for a in args])


def test_ingest_summary_and_store(cli: CliRunner, src: Path, tmp_path: Path) -> None:
    """A plain ingest exits 0 and prints the one-line summary."""
    out = tmp_path / "o.h5"
    result = run(cli, "ingest", src, out, "--size", "20x10", "--workers", "0", "--quiet")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().splitlines()[-1] == (
        f"ingested 5 images, skipped 1 (imgstore info --skipped {out} lists them)"
    )
    store = open_store(out)
    assert store.shape == (10, 20, 3) and len(store) == 5


def test_the_command_exits_with_its_status_and_everything_printed(src: Path, tmp_path: Path) -> None:
    """The real ``imgstore`` process (which skips the interpreter's teardown at exit): the store is complete, the
    summary and the decoder line reach a pipe, and the status is 0; a failing command prints its error and exits
    1; --strict with a skipped file exits 1 after the summary."""
    import subprocess
    import sys

    out = tmp_path / "o.h5"
    cmd = [sys.executable, "-m", "imgstore", "ingest", str(src), str(out), "--size", "20x10", "--workers", "2"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines[0] == f"ingested 5 images, skipped 1 (imgstore info --skipped {out} lists them)"
    assert re.fullmatch(r"decoded: (\d+ [a-z+]+(, )?)+", lines[1]) and sum(map(int, re.findall(r"\d+", lines[1]))) == 5
    with open_store(out) as store:
        assert store.complete and len(store) == 5
    failed = subprocess.run([*cmd[:4], str(tmp_path / "nowhere"), str(tmp_path / "x.h5")], capture_output=True,
                            text=True, timeout=120)  # fmt: skip
    assert failed.returncode == 1 and failed.stderr.startswith("Error: ") and "Traceback" not in failed.stderr
    strict = subprocess.run([*cmd, "--overwrite", "--strict", "--quiet"], capture_output=True, text=True, timeout=120)
    assert strict.returncode == 1 and "--strict" in strict.stderr and strict.stdout.startswith("ingested 5 images")


def test_strict_exits_nonzero_when_something_was_skipped(cli: CliRunner, src: Path, tmp_path: Path) -> None:
    """--strict turns a skipped file into exit code 1 (the store is still written)."""
    result = run(cli, "ingest", src, tmp_path / "o.h5", "--strict", "--workers", "0", "-q", "--size", "8")
    assert result.exit_code == 1
    assert "Error: 1 file(s) were skipped and --strict was given" in result.stderr
    assert len(open_store(tmp_path / "o.h5")) == 5


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--size", "0"], "Error: invalid size 0x0: width and height must be between 1 and 65535 pixels"),
        (["--size", "abc"], "Error: invalid size 'abc': use N or WIDTHxHEIGHT, e.g. 256 or 320x240"),
        (["--resize-mode", "zoom"], "Error: invalid resize mode 'zoom': choose one of crop, stretch, pad, shorter, longer, none"),
        (["--channels", "2"], "Error: invalid channels 2: use 3 (RGB) or 1 (grayscale)"),
        (["--filter", "sinc"], "Error: invalid filter 'sinc': choose one of nearest, box, bilinear, hamming, bicubic, lanczos"),
        (["--pad-color", "nope"], "Error: invalid colour 'nope': use a name (white), #rrggbb or R,G,B with values 0-255"),
        (["--workers", "-1"], "Error: invalid workers -1: give 1 or more (0 decodes in-process)"),
    ],
)  # fmt: skip
def test_invalid_options_are_clear_errors(
    cli: CliRunner, src: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    """Each invalid option: one 'Error: ...' line, exit 1, no traceback, nothing written."""
    out = tmp_path / "o.h5"
    result = run(cli, "ingest", src, out, *args)
    assert result.exit_code == 1
    assert result.stderr.strip() == message
    assert "Traceback" not in result.output
    assert not out.exists()


def test_missing_source(cli: CliRunner, tmp_path: Path) -> None:
    """A missing SRC: clear error, exit 1, no output."""
    result = run(cli, "ingest", tmp_path / "nope", tmp_path / "o.h5")
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: source folder {tmp_path / 'nope'} does not exist")
    assert not (tmp_path / "o.h5").exists()


def test_existing_output_needs_overwrite(cli: CliRunner, src: Path, tmp_path: Path) -> None:
    """An existing OUT is refused with a hint, and replaced with --overwrite."""
    out = tmp_path / "o.h5"
    out.write_text("old")
    result = run(cli, "ingest", src, out, "-q")
    assert result.exit_code == 1
    assert result.stderr.strip() == f"Error: {out} exists: pass --overwrite to replace it (or --append / --resume)"
    assert out.read_text() == "old"
    assert run(cli, "ingest", src, out, "-q", "--overwrite", "--workers", "1", "--size", "8").exit_code == 0


def test_config_file_and_cli_precedence(cli: CliRunner, src: Path, tmp_path: Path) -> None:
    """Options come from the TOML file; options on the command line win over it."""
    cfg = tmp_path / "c.toml"
    cfg.write_text('size = "24x12"\nchannels = 1\nresize-mode = "pad"\n')
    out = tmp_path / "o.h5"
    assert run(cli, "ingest", src, out, "--config", cfg, "-q", "--workers", "0").exit_code == 0
    store = open_store(out)
    assert store.shape == (12, 24, 1) and store.attrs["resize_mode"] == "pad"
    out2 = tmp_path / "o2.h5"
    assert run(cli, "ingest", src, out2, "--config", cfg, "--channels", "3", "-q", "--workers", "0").exit_code == 0
    assert open_store(out2).shape == (12, 24, 3)


def test_config_errors(cli: CliRunner, src: Path, tmp_path: Path) -> None:
    """Unknown keys, bad TOML and missing files are one-line errors naming the file."""
    bad = tmp_path / "bad.toml"
    bad.write_text("sise = 3\n")
    result = run(cli, "ingest", src, tmp_path / "o.h5", "--config", bad)
    assert result.exit_code == 1 and f"Error: config file {bad}: unknown option(s) sise; valid: size" in result.stderr
    bad.write_text("size = [\n")
    result = run(cli, "ingest", src, tmp_path / "o.h5", "--config", bad)
    assert result.exit_code == 1 and "is not valid TOML" in result.stderr
    result = run(cli, "ingest", src, tmp_path / "o.h5", "--config", tmp_path / "none.toml")
    assert result.exit_code == 1 and "does not exist" in result.stderr


@pytest.mark.parametrize("preset", sorted((ROOT / "configs").glob("*.toml")), ids=lambda p: p.name)
def test_shipped_presets_are_valid(preset: Path, cli: CliRunner, src: Path, tmp_path: Path) -> None:
    """Every preset in configs/ loads, validates and ingests."""
    result = run(cli, "ingest", src, tmp_path / "o.h5", "--config", preset, "-q", "--workers", "0")
    assert result.exit_code == 0, result.output
    import imgstore
    from imgstore.config import load_config
    from imgstore.store.encoding import parse_encoding

    wanted = load_config(preset)
    with imgstore.open(tmp_path / "o.h5") as store:  # the store is the one the preset describes
        assert store.attrs["resize_mode"] == wanted.get("resize_mode", "crop")
        assert str(store.encoding) == str(parse_encoding(wanted.get("encode")))
        assert int(store.attrs["size"][0]) == wanted.get("size", 256) and store.channels == wanted.get("channels", 3)


def test_info_text_json_and_skipped(cli: CliRunner, src: Path, tmp_path: Path) -> None:
    """info shows count, shape, chunking and attributes; --json parses; --skipped lists reasons."""
    out = tmp_path / "o.h5"
    run(cli, "ingest", src, out, "--size", "16", "-q", "--workers", "0")
    text = run(cli, "info", out)
    assert text.exit_code == 0
    assert "5 x 16x16x3 uint8" in text.stdout and "chunks      (1, 16, 16, 3)" in text.stdout
    data = json.loads(run(cli, "info", out, "--json").stdout)
    assert data["count"] == 5 and data["image_shape"] == [16, 16, 3] and data["chunks"] == [1, 16, 16, 3]
    assert data["attributes"]["imgstore_format"] == 2 and data["size_on_disk"] == out.stat().st_size
    listed = run(cli, "info", out, "--skipped").stdout
    assert "c0/broken.jpg: " in listed


def test_info_on_non_store(cli: CliRunner, tmp_path: Path) -> None:
    """info on a missing file or a non-HDF5 file is a clear error."""
    assert run(cli, "info", tmp_path / "x.h5").stderr.startswith("Error: ")
    (tmp_path / "t.h5").write_text("text")
    result = run(cli, "info", tmp_path / "t.h5")
    assert result.exit_code == 1 and "not an HDF5 file" in result.stderr


def test_every_command_has_help(cli: CliRunner) -> None:
    """Each command answers --help with its description."""
    import typer.main

    group = typer.main.get_command(app)
    for name in group.commands:  # type: ignore[attr-defined]
        result = run(cli, name, "--help")
        assert result.exit_code == 0 and "Usage" in result.stdout, name


# -- help and README, for every command registered on the app ----------------------------------------------------

COMMANDS = typer.main.get_command(app).commands  # type: ignore[attr-defined]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def options_of(name: str) -> list[TyperOption]:
    """The options of command ``name`` (without -h)."""
    return [p for p in COMMANDS[name].params if isinstance(p, TyperOption)]


def long_names(option: TyperOption) -> list[str]:
    """``--exact``, ``--no-exact``: the long names of ``option``."""
    return [o for o in (*option.opts, *option.secondary_opts) if o.startswith("--")]


def help_screen(cli: CliRunner, *names: str) -> str:
    """``imgstore [NAME] -h`` as printed (the cli fixes the width at 120 columns), without colour codes."""
    result = run(cli, *names, "-h")
    assert result.exit_code == 0, result.output
    return re.sub(r"\x1b\[[0-9;]*m", "", result.stdout)


def description(name: str) -> str:
    """The first paragraph of command ``name``'s docstring, on one line."""
    return flat(inspect.getdoc(COMMANDS[name].callback).split("\n\n")[0])  # type: ignore[union-attr]


def flat(text: str) -> str:
    """``text`` without panel borders, its whitespace (line wraps included) collapsed to single spaces."""
    return " ".join(text.replace("│", " ").split())


def option_rows(screen: str) -> dict[str, str]:
    """Each option's row of a help screen by its first long name, wrapped lines joined: names, type, help, default."""
    rows: dict[str, str] = {}
    current = None
    for line in screen.splitlines():
        start = re.match(r"│ (--[\w-]+)", line)
        if start:
            current = start.group(1)
            rows[current] = ""
        elif not line.startswith("│ "):
            current = None  # a panel border, or text outside the panels
        if current is not None:
            rows[current] += " " + line
    return {name: flat(text) for name, text in rows.items()}


def synopsis(name: str) -> str:
    """The lines of README's "## Command line" synopsis that show ``imgstore NAME`` (with their continuation lines)."""
    section = README.split("\n## Command line\n", 1)[1].split("\n## ", 1)[0]
    block = section.split("```bash\n", 1)[1].split("```", 1)[0]
    lines: list[str] = []
    keep = False
    for line in block.splitlines():
        if not line.startswith(" "):
            keep = line.startswith(f"imgstore {name} ")
        if keep:
            lines.append(line)
    return "\n".join(lines)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_help_shows_description_and_every_option_as_written(cli: CliRunner, name: str) -> None:
    """``imgstore CMD -h`` exits 0 with the command's description and every option, its help text as written."""
    screen = help_screen(cli, name)
    assert description(name) in flat(screen)
    rows = option_rows(screen)
    for option in options_of(name):
        row = rows.get(long_names(option)[0], "")
        assert all(n in row for n in long_names(option)), (name, option.name, row)
        written = flat((option.help or "").replace("\\[", "["))  # Command escapes "[" for Rich; it prints "["
        assert written in row, (name, option.name, row)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_help_shows_every_default_and_no_bool_type(cli: CliRunner, name: str) -> None:
    """Every option's row shows its default; flags (-h too) show no <bool>/BOOLEAN type."""
    rows = option_rows(help_screen(cli, name))
    for option in options_of(name):
        assert "[default: " in rows[long_names(option)[0]], (name, option.name)
    assert rows["--help"] == "--help -h Show this message and exit."
    assert not any(word in row for row in rows.values() for word in ("<bool>", "BOOLEAN")), rows


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_readme_documents_the_command_and_every_option(name: str) -> None:
    """README's "## Command line" synopsis shows ``imgstore CMD`` with every long option name of the command."""
    text = synopsis(name)
    assert text, f"README's Command line section has no `imgstore {name} ...` line"
    for option in options_of(name):
        for long in long_names(option):
            assert re.search(rf"(?<![\w-]){re.escape(long)}(?![\w-])", text), f"imgstore {name} {long} not in README"


def test_app_help_lists_every_command(cli: CliRunner) -> None:
    """``imgstore -h`` lists every command with its description; its -h shows no <bool> type."""
    screen = flat(help_screen(cli))
    for name in COMMANDS:
        assert f"{name} {description(name)}" in screen, name
    assert "--help -h Show this message and exit." in screen


def test_install_hints_keep_their_brackets(cli: CliRunner) -> None:
    """Rich markup does not eat the extra of an install hint: ``pip install 'imgstore[compression]'`` is printed."""
    rows = option_rows(help_screen(cli, "ingest"))
    assert "zstd or blosc need pip install 'imgstore[compression]'." in rows["--compression"]
    assert "Needs pip install 'imgstore[dask]'." in rows["--dask"]


def test_ingest_help_shows_the_library_defaults(cli: CliRunner) -> None:
    """Ingest's options are None when not given (a --config file may set them); the help shows the library's
    defaults, as one would type them."""
    rows = option_rows(help_screen(cli, "ingest"))
    decode = DecodeOptions()
    ingest = {name: p.default for name, p in inspect.signature(IngestOptions).parameters.items()}
    assert decode.size == (256, 256) and decode.pad_color == (0, 0, 0) and decode.background == (255, 255, 255)
    expected = {
        "--size": "256", "--channels": str(decode.channels), "--resize-mode": decode.resize_mode.value,
        "--filter": decode.filter, "--pad-color": "black", "--background": "white",
        "--max-pixels": str(decode.max_pixels), "--exact": "off",
        "--extensions": EXTENSIONS_DEFAULT,
        "--workers": str(default_workers()), "--timeout": f"{ingest['timeout']:g}",
        "--buffer-size": str(ingest["buffer_size"]), "--flush-every": f"{ingest['flush_every']:g}",
        "--compression": ingest["compression"], "--overwrite": "off", "--strict": "off", "--labels": "none",
    }  # fmt: skip
    for option, value in expected.items():
        assert rows[option].endswith(f"[default: ({value})]"), (option, rows[option])


def test_other_commands_show_the_library_defaults(cli: CliRunner) -> None:
    """Defaults the CLI spells out itself are the library's."""
    from imgstore.distributed import SHARDS_PER_THREAD
    from imgstore.preview import DEFAULT_TILE, make_preview
    from imgstore.vectors.convert import DEFAULT_CHUNK_BYTES
    from imgstore.vectors.export import export_ann

    export = option_rows(help_screen(cli, "export"))
    for name, p in inspect.signature(export_ann).parameters.items():
        if name in ("queries", "k", "metric", "seed"):
            assert export[f"--{name}"].endswith(f"[default: ({p.default})]"), export[f"--{name}"]
    preview = option_rows(help_screen(cli, "preview"))
    make = inspect.signature(make_preview).parameters
    assert preview["--tile"].endswith(f"[default: ({DEFAULT_TILE})]")
    assert preview["--count"].endswith(f"[default: {make['count'].default}]")
    assert preview["--seed"].endswith(f"[default: {make['seed'].default}]")
    convert = option_rows(help_screen(cli, "convert"))
    assert convert["--chunk-rows"].endswith(f"[default: (about {DEFAULT_CHUNK_BYTES // 2**20} MiB)]")
    ingest = option_rows(help_screen(cli, "ingest"))
    assert f"[default: ({SHARDS_PER_THREAD} per Dask worker thread, at most one per file)]" in ingest["--shards"]
