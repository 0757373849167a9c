"""Sources: where the photos of an ingest come from, behind one protocol and a registry.

A :class:`Source` lists its candidates (:meth:`~Source.scan`: in a fixed order, each with the name it is stored
under, plus what it had to skip and why) and reads one candidate's bytes (:meth:`~Source.read`). It is picklable:
the decoder workers and Dask tasks get the source itself and read their candidates through it, so nothing
downstream assumes a candidate is a local file. :func:`open_source` turns what a user typed (SRC) into a source: registered factories
are asked in turn, newest first, and the folder walker (:mod:`imgstore.sources.folder`) takes what none claims. An
archive or a list file is one module and one :func:`register_source` call.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, Union, runtime_checkable

from imgstore.errors import OptionError


@dataclass(frozen=True)
class Candidate:
    """One image to ingest: ``key`` for the source's :meth:`Source.read` (a folder's: the file path), ``name`` as
    stored (relative, ``/``-separated, escaped by :func:`imgstore.store.escape_name`).

    A source whose rows carry data (a list file, see :class:`RowData`) fills ``label`` (the label's text; None: this
    row has none) and ``meta`` (one value per meta column, in the column order of :attr:`RowData.columns`: int,
    float or str). Both stay small, so a candidate stays cheap to hold and to pickle.
    """

    key: str
    name: str
    label: str | None = None
    meta: tuple[int | float | str, ...] = ()


@dataclass(frozen=True)
class RowData:
    """What the candidates of a source with per-row data carry: whether they are labelled (then
    :attr:`Candidate.label` is each one's label text) and the meta columns of :attr:`Candidate.meta` as
    ``(column, kind)`` pairs, kind ``"int64"``, ``"float64"`` or ``"text"`` (see :mod:`imgstore.store.meta`)."""

    labelled: bool = False
    columns: tuple[tuple[str, str], ...] = ()
    where: str = ""  # the file the rows come from, for messages (a list file's name)


@dataclass
class Discovery:
    """What a source holds: candidates in the order they are stored (a folder's sorted by name, a list file's in
    list order), what had to be skipped: ``(name, reason)``, and the files that are not candidates: ``ignored``
    counts them by lower-case extension (``""`` for none), so a run can say what it passed over instead of passing
    it over silently. ``rows`` describes the per-row data the candidates carry (None: none, as for a folder)."""

    files: list[Candidate] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    ignored: dict[str, int] = field(default_factory=dict)
    rows: RowData | None = None

    @property
    def ignored_count(self) -> int:
        """How many files were not candidates."""
        return sum(self.ignored.values())


def count_ignored(counts: dict[str, int], name: str) -> None:
    """Count the file ``name`` (a base name) in ``counts`` under its lower-case extension (``""`` for none), escaped
    as stored names are (bytes that are not UTF-8 as ``\\xNN``)."""
    from imgstore.store.format import escape_name

    ext = escape_name(os.path.splitext(name)[1].lower())
    counts[ext] = counts.get(ext, 0) + 1


@runtime_checkable
class Source(Protocol):
    """A collection of image files."""

    @property
    def label(self) -> str:
        """What the store records as its ``source`` attribute (the path as given, escaped)."""
        ...

    def scan(self, extensions: tuple[str, ...]) -> Discovery:
        """The candidates whose name ends in one of ``extensions`` (lower-case, with the dot), in the source's order
        (a folder's sorted by name; a list file's in list order, every listed file a candidate).

        Raise :class:`~imgstore.errors.SourceError` when the source cannot be listed at all; an entry that cannot
        be used goes to ``skipped`` with its reason.
        """
        ...

    def read(self, key: str) -> bytes:
        """The bytes of the candidate ``key``; raise :class:`~imgstore.errors.BadImageError` (reason
        ``unreadable: ...``) when they cannot be read. Runs in decoder worker processes, unless
        :func:`parent_reads` says otherwise for ``key``."""
        ...


def parent_reads(source: Source, key: str) -> bool:
    """Whether the candidate ``key`` must be read in the process that scanned ``source`` (which then sends its
    bytes to a decoder worker) rather than by the worker itself: a source says so with an optional method
    ``parent_reads(key) -> bool`` (a compressed tar's members can only be reached through the decompressor state
    its scan built). Sources without the method are read in the workers."""
    method = getattr(source, "parent_reads", None)
    return bool(method(key)) if method is not None else False


def release(source: Source) -> None:
    """Let go of what reading ``source`` opened in this process (open archives, decompressor checkpoints): a
    source says how with an optional method ``release()``, which the ingest and ``verify`` call when they are done
    with it; a later read opens again what it needs."""
    method = getattr(source, "release", None)
    if method is not None:
        method()


@dataclass(frozen=True)
class ScannedSource:
    """``source`` with its scan for ``extensions`` done once, in ``found``: the shard tasks of a Dask run read
    through it instead of walking SRC again each. Reads go to ``source``."""

    source: Source
    found: Discovery
    extensions: tuple[str, ...]

    @property
    def label(self) -> str:
        return self.source.label

    def scan(self, extensions: tuple[str, ...]) -> Discovery:
        if tuple(extensions) != self.extensions:
            return self.source.scan(extensions)
        # A copy: callers cut it to a shard.
        return Discovery(list(self.found.files), list(self.found.skipped), dict(self.found.ignored), self.found.rows)

    def read(self, key: str) -> bytes:
        return self.source.read(key)

    def parent_reads(self, key: str) -> bool:
        return parent_reads(self.source, key)

    def release(self) -> None:
        release(self.source)


SourceFactory = Callable[[str], Union[Source, None]]
_FACTORIES: list[tuple[str, SourceFactory]] = []


def register_source(name: str, factory: SourceFactory) -> None:
    """Let ``factory(spec)`` claim a SRC (return a :class:`Source`) or pass (return None). Factories are asked
    newest first, before the folder walker; one registered again under the same ``name`` is replaced."""
    if not callable(factory):
        raise OptionError(f"invalid source factory {factory!r}: give a callable taking SRC and returning a Source")
    unregister_source(name)
    _FACTORIES.insert(0, (name, factory))


def unregister_source(name: str) -> None:
    """Forget the factory registered as ``name`` (nothing when there is none)."""
    _FACTORIES[:] = [(n, f) for n, f in _FACTORIES if n != name]


def open_source(src: str | os.PathLike[str] | Source) -> Source:
    """The :class:`Source` for SRC: a source passed as is, else the first registered factory's, else a folder."""
    if isinstance(src, Source):
        return src
    spec = os.fspath(src)
    for _name, factory in _FACTORIES:
        source = factory(spec)
        if source is not None:
            return source
    from imgstore.sources.folder import FolderSource

    return FolderSource(spec)


def carries_labels(source: Source) -> bool:
    """True when ``source`` labels its candidates itself (a list file with a ``label`` column), as it says through
    a ``carries_labels`` attribute (a scanned source: through its scan)."""
    if isinstance(source, ScannedSource):
        return bool(source.found.rows is not None and source.found.rows.labelled)
    return bool(getattr(source, "carries_labels", False))


# The built-in sources that claim a SRC (the folder walker takes what none claims): registered first, so a factory
# registered later is asked before them.
def _register_builtins() -> None:
    import importlib

    # Each registers itself; they need the names above.
    importlib.import_module("imgstore.sources.archive")
    importlib.import_module("imgstore.sources.listfile")


_register_builtins()
