"""Pure decoder for RPM header blobs, as stored in `rpmdb.sqlite` (`Packages.blob`)."""

from __future__ import annotations

import struct

from exporter.hostfacts.model import HostFactsError, InstalledPackage

TAG_NAME, TAG_VERSION, TAG_RELEASE, TAG_ARCH = 1000, 1001, 1002, 1022
_STRING, _STRING_ARRAY, _I18NSTRING = 6, 8, 9
_MAGIC = b"\x8e\xad\xe8\x01\x00\x00\x00\x00"
_MAX_INDEX, _MAX_DATA = 0xFFFF, 256 * 1024 * 1024  # rpm's own sanity limits


def decode_rpm_header(blob: bytes, wanted: frozenset[int] | None = None) -> dict[int, str]:
    """String tags of an RPM header blob (il, dl, il*16 index entries, dl data bytes).

    The rpmdb stores headers without the 8-byte magic; a blob that has it is accepted too.
    Only string-typed tags are decoded (the first string of an array); others are skipped.
    """
    if blob[:8] == _MAGIC:
        blob = blob[8:]
    if len(blob) < 8:
        raise HostFactsError(f"rpm header too short ({len(blob)} bytes)")
    index_count, data_len = struct.unpack(">II", blob[:8])
    data_start = 8 + 16 * index_count
    if index_count > _MAX_INDEX or data_len > _MAX_DATA or data_start + data_len > len(blob):
        raise HostFactsError(
            f"rpm header sizes do not fit the blob: {index_count} tags, {data_len} data bytes, "
            f"{len(blob)} bytes in total"
        )
    data = blob[data_start : data_start + data_len]
    tags: dict[int, str] = {}
    for entry in range(index_count):
        tag, kind, offset, _count = struct.unpack_from(">iiii", blob, 8 + 16 * entry)
        if kind not in (_STRING, _STRING_ARRAY, _I18NSTRING) or (wanted and tag not in wanted):
            continue
        end = data.find(b"\0", offset) if 0 <= offset < data_len else -1
        if end < 0:
            raise HostFactsError(f"rpm header tag {tag}: string offset {offset} outside the data")
        tags[tag] = data[offset:end].decode("utf-8", errors="replace")
    return tags


def package_from_header(blob: bytes) -> InstalledPackage:
    """NAME, VERSION-RELEASE and ARCH of one rpm header (the epoch is left out, like `rpm -q`)."""
    tags = decode_rpm_header(blob, frozenset({TAG_NAME, TAG_VERSION, TAG_RELEASE, TAG_ARCH}))
    missing = [t for t in (TAG_NAME, TAG_VERSION, TAG_RELEASE) if t not in tags]
    if missing:
        raise HostFactsError(f"rpm header without tag(s) {missing} (NAME/VERSION/RELEASE)")
    version = f"{tags[TAG_VERSION]}-{tags[TAG_RELEASE]}"
    return InstalledPackage(tags[TAG_NAME], version, tags.get(TAG_ARCH, ""))
