"""Command-stream files: a versioned binary container and a JSONL dump, both with loaders.

Binary layout (little-endian), format version 1::

    offset  size  field
    0       8     magic  b"CIMSTRM\\0"
    8       2     format version (1)
    10      2     word_bits of the stream (from the configuration's command set)
    12      8     architecture hash of the hardware configuration (``HwConfig.arch_hash``, 16 hex digits)
    20      4     length J of the configuration JSON
    24      4     word count N
    28      4     command count
    32      4     CRC-32 of the body (the N words)
    36      4     CRC-32 of bytes 0..36 and the configuration JSON
    40      J     the configuration, canonical JSON (``HwConfig.to_json()``)
    40+J    N*B   the words, B = word_bits / 8 bytes each, little-endian

The JSONL dump has a header line (``format``, ``version``, ``hw``, ``hw_hash``, ``word_bits``, ``commands``) and
one line per command (``i``, ``op``, the fields, ``data`` for payload commands). Both are written atomically
(temporary file, then rename); every defect found while loading raises :class:`~cimisa.errors.StreamError`.
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from cimisa.config import HwConfig
from cimisa.errors import ConfigError, StreamError
from cimisa.fsutil import atomic_write_bytes, atomic_write_text
from cimisa.isa import PAYLOAD, Command, EncodeError, Isa

__all__ = ["MAGIC", "FORMAT_VERSION", "StreamFile", "pack_stream", "unpack_stream", "write_stream", "read_stream",
           "write_jsonl", "read_jsonl", "dumps_jsonl"]

MAGIC = b"CIMSTRM\0"
FORMAT_VERSION = 1
_HEAD = struct.Struct("<8sHH8sIIII")   # up to and excluding the header CRC
_HEAD_CRC = struct.Struct("<I")


@dataclass(frozen=True)
class StreamFile:
    """A loaded stream: the configuration it was built for, its words and its command count."""

    cfg: HwConfig
    words: tuple[int, ...]
    commands: int

    def decode(self) -> list[Command]:
        """Return the commands (raises DecodeError on illegal opcodes or truncated payloads)."""
        return Isa.of(self.cfg).decode(self.words)


def _count_commands(isa: Isa, words: Sequence[int]) -> int:
    """Count headers, skipping payloads; an illegal opcode counts as one command and ends the count."""
    n = i = 0
    while i < len(words):
        hdr = isa.decode_header(int(words[i]))
        n += 1
        if hdr is None:
            break
        op, args = hdr
        i += 1 + (isa.payload_words(op, args["count"]) if op in PAYLOAD else 0)
    return n


def pack_stream(cfg: HwConfig, words: Sequence[int], *, commands: int | None = None) -> bytes:
    """Return the binary container of ``words`` built for ``cfg``."""
    isa = Isa.of(cfg)
    nb = isa.word_bytes
    try:
        body = b"".join(int(w).to_bytes(nb, "little") for w in words)
    except OverflowError:
        raise StreamError(f"a word does not fit {isa.word_bits} bits") from None
    if commands is None:
        commands = _count_commands(isa, words)
    cfg_json = cfg.to_json().encode()
    head = _HEAD.pack(MAGIC, FORMAT_VERSION, isa.word_bits, bytes.fromhex(cfg.arch_hash), len(cfg_json),
                      len(words), commands, zlib.crc32(body))
    return head + _HEAD_CRC.pack(zlib.crc32(head + cfg_json)) + cfg_json + body


def unpack_stream(blob: bytes, *, expect: HwConfig | None = None, origin: str = "stream") -> StreamFile:
    """Parse a binary container; check magic, version, checksums, sizes and (optionally) the configuration."""
    fixed = _HEAD.size + _HEAD_CRC.size
    if len(blob) < fixed:
        raise StreamError(f"{origin}: truncated header ({len(blob)} bytes, need {fixed})")
    magic, version, word_bits, hw_hash, jlen, nwords, ncmds, body_crc = _HEAD.unpack_from(blob)
    if magic != MAGIC:
        raise StreamError(f"{origin}: not a CIM command stream (bad magic {magic!r})")
    if version != FORMAT_VERSION:
        raise StreamError(f"{origin}: unsupported format version {version} (this kit reads {FORMAT_VERSION})")
    (head_crc,) = _HEAD_CRC.unpack_from(blob, _HEAD.size)
    cfg_json = blob[fixed:fixed + jlen]
    if len(cfg_json) < jlen:
        raise StreamError(f"{origin}: truncated configuration block")
    if zlib.crc32(blob[:_HEAD.size] + cfg_json) != head_crc:
        raise StreamError(f"{origin}: header checksum mismatch (corrupt header)")
    try:
        cfg = HwConfig.from_dict(json.loads(cfg_json), origin=f"{origin} configuration")
    except (ValueError, ConfigError) as exc:
        raise StreamError(f"{origin}: bad configuration block: {exc}") from None
    if cfg.arch_hash != hw_hash.hex():
        raise StreamError(f"{origin}: configuration does not match its hash")
    isa = Isa.of(cfg)
    if word_bits != isa.word_bits:
        raise StreamError(f"{origin}: word width {word_bits} does not match the configuration ({isa.word_bits})")
    if expect is not None and expect.arch_hash != cfg.arch_hash:
        raise StreamError(f"{origin}: built for hardware {cfg.name!r} ({cfg.arch_hash}), not {expect.name!r} "
                          f"({expect.arch_hash})")
    body = blob[fixed + jlen:]
    nb = isa.word_bytes
    if len(body) != nwords * nb:
        kind = "truncated" if len(body) < nwords * nb else "has trailing bytes"
        raise StreamError(f"{origin}: body {kind}: {len(body)} bytes for {nwords} words of {nb} bytes")
    if zlib.crc32(body) != body_crc:
        raise StreamError(f"{origin}: body checksum mismatch (corrupt words)")
    words = tuple(int.from_bytes(body[i:i + nb], "little") for i in range(0, len(body), nb))
    return StreamFile(cfg, words, ncmds)


def write_stream(path: str | os.PathLike, cfg: HwConfig, cmds: Sequence[Command]) -> int:
    """Encode ``cmds`` and write the binary container to ``path`` atomically; return the word count."""
    words = Isa.of(cfg).encode(cmds)
    atomic_write_bytes(path, pack_stream(cfg, words, commands=len(cmds)))
    return len(words)


def read_stream(path: str | os.PathLike, *, expect: HwConfig | None = None) -> StreamFile:
    """Load a binary container from ``path`` (see :func:`unpack_stream`)."""
    try:
        blob = Path(path).read_bytes()
    except OSError as exc:
        raise StreamError(f"cannot read command stream {str(path)!r}: {exc.strerror}") from None
    return unpack_stream(blob, expect=expect, origin=str(path))


def dumps_jsonl(cfg: HwConfig, cmds: Sequence[Command]) -> str:
    """Return the JSONL dump of ``cmds``."""
    isa = Isa.of(cfg)
    isa.encode(cmds)  # validates every field width and payload value
    head = {"format": "cim-stream-jsonl", "version": FORMAT_VERSION, "hw": cfg.to_dict(), "hw_hash": cfg.arch_hash,
            "word_bits": isa.word_bits, "commands": len(cmds)}
    lines = [json.dumps(head, sort_keys=True)]
    lines += [json.dumps({"i": i, **c.to_json()}) for i, c in enumerate(cmds)]
    return "\n".join(lines) + "\n"


def write_jsonl(path: str | os.PathLike, cfg: HwConfig, cmds: Sequence[Command]) -> None:
    """Write the JSONL dump of ``cmds`` to ``path`` atomically."""
    atomic_write_text(path, dumps_jsonl(cfg, cmds))


def read_jsonl(path: str | os.PathLike, *, expect: HwConfig | None = None) -> tuple[HwConfig, list[Command]]:
    """Load a JSONL dump; return the configuration and the commands, checked against the command set."""
    origin = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise StreamError(f"cannot read command stream {origin!r}: {getattr(exc, 'strerror', exc)}") from None
    lines = text.splitlines()
    if not lines:
        raise StreamError(f"{origin}: empty file")
    try:
        head = json.loads(lines[0])
    except ValueError:
        raise StreamError(f"{origin}:1: header is not JSON") from None
    if not isinstance(head, dict) or head.get("format") != "cim-stream-jsonl":
        raise StreamError(f"{origin}:1: not a CIM command stream dump")
    if head.get("version") != FORMAT_VERSION:
        raise StreamError(f"{origin}:1: unsupported format version {head.get('version')!r}")
    try:
        cfg = HwConfig.from_dict(head.get("hw"), origin=f"{origin} configuration")
    except ConfigError as exc:
        raise StreamError(str(exc)) from None
    if head.get("hw_hash") != cfg.arch_hash:
        raise StreamError(f"{origin}:1: configuration does not match its hash")
    if expect is not None and expect.arch_hash != cfg.arch_hash:
        raise StreamError(f"{origin}: built for hardware {cfg.name!r} ({cfg.arch_hash}), not {expect.name!r} "
                          f"({expect.arch_hash})")
    isa = Isa.of(cfg)
    cmds: list[Command] = []
    for lineno, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            if not isinstance(obj, dict):
                raise ValueError
        except ValueError:
            raise StreamError(f"{origin}:{lineno}: not a JSON object") from None
        if obj.get("i") != len(cmds):
            raise StreamError(f"{origin}:{lineno}: command index {obj.get('i')!r}, expected {len(cmds)}")
        try:
            cmd = Command.from_json(obj)
            isa.encode([cmd])
        except EncodeError as exc:
            raise StreamError(f"{origin}:{lineno}: command {len(cmds)}: {exc}") from None
        cmds.append(cmd)
    if head.get("commands") != len(cmds):
        raise StreamError(f"{origin}: header says {head.get('commands')!r} commands, file has {len(cmds)}")
    return cfg, cmds
