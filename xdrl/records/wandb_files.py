"""Read an offline W&B run file (``run-<id>.wandb``) back into Python values.

An offline run stores its records in a LevelDB-style log: a 7-byte header
(``:W&B``, magic ``0xBEE1``, version), then 32 KiB blocks of chunks, each with a
CRC-32, a length and a type (full, first, middle, last). Every assembled
payload is a ``wandb_internal_pb2.Record`` protobuf. This reader lets tests,
``xdrl report`` and duplicate-step checks look at what W&B really stored,
without a server.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import struct
import zlib
from collections.abc import Iterator
from typing import Any

from xdrl._compat import WANDB_RUN_FILE, wandb_record_class

_HEADER = WANDB_RUN_FILE["header"]
_HEADER_SIZE = WANDB_RUN_FILE["header_size"]
_BLOCK = WANDB_RUN_FILE["block"]
# Each chunk: CRC-32 (4 bytes), length (2), type (1), little-endian.
_CHUNK_HEADER = struct.Struct("<IHB")
_FULL, _FIRST, _MIDDLE, _LAST = (WANDB_RUN_FILE[kind] for kind in ("full", "first", "middle", "last"))


def iter_record_payloads(path: str | pathlib.Path) -> Iterator[bytes]:
    """Yield the raw protobuf payloads of a run file, checking every CRC.

    Raises:
        ValueError: for a file that is not a W&B run log or a corrupt chunk.
    """
    data = pathlib.Path(path).read_bytes()
    if data[:4] != _HEADER:
        raise ValueError(f"{path}: not a W&B run file (header {data[:4]!r})")
    pos, pending = _HEADER_SIZE, b""
    while pos + _CHUNK_HEADER.size <= len(data):
        left_in_block = _BLOCK - pos % _BLOCK
        if left_in_block < _CHUNK_HEADER.size:
            pos += left_in_block
            continue
        checksum, length, kind = _CHUNK_HEADER.unpack_from(data, pos)
        if (checksum, length, kind) == (0, 0, 0):  # zero padding up to the block end
            pos += left_in_block
            continue
        start = pos + _CHUNK_HEADER.size
        chunk = data[start : start + length]
        if len(chunk) < length:
            break  # a run still being written: the tail is not complete yet
        if zlib.crc32(chunk, zlib.crc32(bytes([kind]))) & 0xFFFFFFFF != checksum:
            raise ValueError(f"{path}: bad checksum at byte {pos}")
        pos = start + length
        if kind == _FULL:
            yield chunk
        elif kind == _FIRST:
            pending = chunk
        elif kind == _MIDDLE:
            pending += chunk
        elif kind == _LAST:
            yield pending + chunk
            pending = b""


@dataclasses.dataclass
class WandbRunRecords:
    """What an offline run file holds."""

    run_id: str | None = None
    project: str | None = None
    group: str | None = None
    name: str | None = None
    history: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    #: The run's config (top-level keys, values as W&B stored them).
    config: dict[str, Any] = dataclasses.field(default_factory=dict)
    exit_code: int | None = None
    preempting: bool = False

    @property
    def finished(self) -> bool:
        """Whether the run wrote its exit record."""
        return self.exit_code is not None


def read_run(path: str | pathlib.Path) -> WandbRunRecords:
    """Parse a ``run-<id>.wandb`` file: run identity, config, history rows, exit record."""
    record_class = wandb_record_class()
    result = WandbRunRecords()
    for payload in iter_record_payloads(path):
        record = record_class()
        record.ParseFromString(payload)
        kind = record.WhichOneof("record_type")
        if kind == "run":
            result.run_id = record.run.run_id
            result.project = record.run.project
            result.group = record.run.run_group
            result.name = record.run.display_name
            _update_config(result.config, record.run.config.update)
        elif kind == "config":
            _update_config(result.config, record.config.update)
        elif kind == "history":
            row = {}
            for item in record.history.item:
                key = item.key or "/".join(item.nested_key)
                row[key] = json.loads(item.value_json)
            result.history.append(row)
        elif kind == "exit":
            result.exit_code = record.exit.exit_code
        elif kind == "preempting":
            result.preempting = True
    return result


def _update_config(config: dict[str, Any], items: Any) -> None:
    for item in items:
        key = item.key or "/".join(item.nested_key)
        if not key.startswith("_"):  # W&B's own entries (_wandb)
            config[key] = json.loads(item.value_json)


def find_run_files(directory: str | pathlib.Path, run_id: str | None = None) -> list[pathlib.Path]:
    """Run files under ``directory`` (``latest-run`` links skipped), oldest first."""
    pattern = f"run-{run_id}.wandb" if run_id else "run-*.wandb"
    files = [p for p in pathlib.Path(directory).rglob(pattern) if "latest-run" not in p.parts]
    return sorted(files, key=lambda p: (p.parent.name, p.name))
