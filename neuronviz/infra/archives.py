"""Zip archives read within stated bounds, before ``zipfile`` does any work on them.

``zipfile.ZipFile`` reads the whole central directory the end-of-central-directory record points
at, making one ``ZipInfo`` per entry with no cap, and trusts neither the record's entry count nor
anything else to stop it: a zip whose end record says 1 entry but whose directory lists 1.8 M
took +913 MB and 21 s before the old count check could refuse it (issue 24.16). And a member is
whatever bytes it inflates to: 20 × 49 MB zero-filled ``.png`` members in a 0.95 MB zip were all
inflated (+982 MB) before the first one was looked at (issue 24.17).

- :func:`check_directory` reads the end record (the standard library's own reader, zip64
  included), checks the directory's declared size against the entry cap, then walks the
  directory's fixed-size headers with ``struct`` (no object per entry), stopping at the cap: the
  work is bounded by the cap, not by the file. The walk must find exactly the entries the end
  record declares. Only then may ``zipfile`` parse it.
- :class:`ZipMember` reads one member lazily, from a stream that never yields more than the
  member declares (``zipfile`` enforces the declared size and the CRC), with a running total of
  decompressed bytes shared by the archive (:class:`Inflated`). :meth:`ZipMember.head` reads only
  the first bytes (for the image header check of :func:`neuronviz.data.images.read_header`) before
  anything else of the member is decompressed.

Hand-written: the standard library exposes the end record (``zipfile._EndRecData``, stable since
Python 2) but no bounded directory walk and no decompression budget.
"""

from __future__ import annotations

import io
import struct
import zipfile
from dataclasses import dataclass
from typing import BinaryIO

from neuronviz.infra.errors import NeuronvizError
from neuronviz.infra.settings import format_bytes

#: Largest central-directory record counted per entry when bounding the directory's size: the
#: 46-byte fixed header plus a name, extra field and comment of up to 1 KiB together (names in a
#: data set are tens of bytes).
MAX_DIRECTORY_BYTES_PER_ENTRY = 46 + 1024

_CENTRAL = struct.Struct("<4s4B4HL2L5H2L")  # zipfile.structCentralDir: 46 bytes
_CENTRAL_SIGNATURE = b"PK\x01\x02"


def check_directory(data: bytes | BinaryIO, max_entries: int, label: str, error: type[NeuronvizError]) -> int:
    """Check the zip in ``data`` (its bytes, or a seekable binary file) before ``zipfile`` parses
    it; return its entry count. Only the end record and the directory are read.

    Refuses with ``error`` (a :class:`~neuronviz.infra.errors.NeuronvizError` subclass): no end record;
    an end record declaring more than ``max_entries`` entries, or a directory larger than
    ``max_entries`` × :data:`MAX_DIRECTORY_BYTES_PER_ENTRY`, or one that does not lie inside the
    file; a directory that lists more entries than the cap or than the end record declares, or
    fewer. At most ``max_entries + 1`` headers are read."""
    handle = io.BytesIO(data) if isinstance(data, (bytes, bytearray, memoryview)) else data
    try:
        end = zipfile._EndRecData(handle)  # type: ignore[attr-defined]  # the stdlib's own end-record reader
    except (OSError, struct.error, zipfile.BadZipFile) as problem:
        raise error(f"{label} is not a readable zip file ({problem})") from None
    if not end:
        raise error(f"{label} is not a zip file (no end-of-central-directory record)")
    declared = int(end[zipfile._ECD_ENTRIES_TOTAL])  # type: ignore[attr-defined]
    size = int(end[zipfile._ECD_SIZE])  # type: ignore[attr-defined]
    offset = int(end[zipfile._ECD_OFFSET])  # type: ignore[attr-defined]
    if declared > max_entries:
        raise error(f"{label} lists {declared:,} entries; zips of up to {max_entries:,} entries are read here")
    if size > max_entries * MAX_DIRECTORY_BYTES_PER_ENTRY:
        raise error(
            f"{label} has a central directory of {format_bytes(size)}; zips of up to {max_entries:,} entries "
            f"({format_bytes(max_entries * MAX_DIRECTORY_BYTES_PER_ENTRY)} of directory) are read here. Nothing was extracted."
        )
    # where zipfile will read it: the record's own position minus the directory (a prefix is allowed)
    location = int(end[zipfile._ECD_LOCATION])  # type: ignore[attr-defined]
    concat = location - size - offset
    if end[zipfile._ECD_SIGNATURE] == zipfile.stringEndArchive64:  # type: ignore[attr-defined]
        concat -= zipfile.sizeEndCentDir64 + zipfile.sizeEndCentDir64Locator  # type: ignore[attr-defined]
    start = offset + concat
    length = handle.seek(0, io.SEEK_END)
    if start < 0 or start + size > length:
        raise error(f"{label} is damaged: its central directory points outside the file. Nothing was extracted.")
    handle.seek(start)
    directory = handle.read(size)  # at most max_entries × MAX_DIRECTORY_BYTES_PER_ENTRY (checked above)
    found, position, stop = 0, 0, size
    while position < stop:
        if found >= max_entries or found >= declared:
            raise error(
                f"{label} is damaged or crafted: its end record declares {declared:,} entries but its central "
                f"directory lists more than {found:,} (up to {max_entries:,} are read here). Nothing was extracted."
            )
        if position + _CENTRAL.size > stop:
            raise error(f"{label} is damaged: its central directory is truncated. Nothing was extracted.")
        header = _CENTRAL.unpack_from(directory, position)
        if header[0] != _CENTRAL_SIGNATURE:
            raise error(f"{label} is damaged: entry {found + 1} of its central directory has no valid header. Nothing was extracted.")
        name_length, extra_length, comment_length = header[12], header[13], header[14]
        position += _CENTRAL.size + name_length + extra_length + comment_length
        found += 1
    if found != declared:
        raise error(
            f"{label} is damaged or crafted: its end record declares {declared:,} entries, its central directory "
            f"lists {found:,}. Nothing was extracted."
        )
    return found


@dataclass
class Inflated:
    """The running total of bytes decompressed from one archive, against ``cap``."""

    cap: int
    label: str
    error: type[NeuronvizError]
    total: int = 0

    def add(self, count: int, member: str) -> None:
        self.total += count
        if self.total > self.cap:
            raise self.error(
                f"{self.label}: decompressing {member} brings what was inflated from the zip to more than "
                f"{format_bytes(self.cap)}, the cap: refused (nothing more is decompressed)"
            )


@dataclass
class ZipMember:
    """One member of an open archive, read on demand (``read``: its bytes; ``head``: the first
    ``n`` only). ``name`` is its path in the archive (what messages show)."""

    archive: zipfile.ZipFile
    info: zipfile.ZipInfo
    inflated: Inflated
    name: str = ""

    def __post_init__(self) -> None:
        self.name = self.name or self.info.filename

    @property
    def size(self) -> int:
        """The size the member declares once decompressed."""
        return int(self.info.file_size)

    def head(self, n: int) -> bytes:
        """The member's first ``n`` bytes (at most), decompressing no more than that (nothing is
        kept: a set's members are many)."""
        data = self._read(min(n, self.size))
        self.inflated.add(len(data), self.name)
        return data

    def read(self, n: int = -1) -> bytes:
        """The member's bytes (at most its declared size; ``zipfile`` checks the CRC at its end)."""
        data = self._read(self.size + 1)
        self.inflated.add(len(data), self.name)
        if len(data) != self.size:
            raise self.inflated.error(f"the zip member {self.name!r} does not hold the size it declares: refused")
        return data if n is None or n < 0 else data[:n]

    def _read(self, n: int) -> bytes:
        try:
            with self.archive.open(self.info) as stream:
                return stream.read(n)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError, RuntimeError) as problem:
            raise self.inflated.error(f"the zip member {self.name!r} cannot be read ({problem}): refused") from None
