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
(temporary file, then rename).

Loading checks everything and trusts nothing: every header field (magic, version, word width, lengths, both
checksums, the command count against the body), the configuration (validated exactly like a TOML file, see
:meth:`HwConfig.from_dict <cimisa.config.HwConfig.from_dict>`), and in a JSONL dump the type of every value
(integers must be JSON integers, not ``1.0``, ``true`` or ``"1"``). Every defect raises
:class:`~cimisa.errors.StreamError` naming the file (and the line of a JSONL dump); a file larger than
:data:`MAX_STREAM_BYTES`, a folder or a device is refused before it is read.
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

from cimisa.config import MAX_CONFIG_BYTES, HwConfig, _show, read_limited
from cimisa.errors import ConfigError, StreamError
from cimisa.fsutil import atomic_write_bytes, atomic_write_text
from cimisa.isa import PAYLOAD, Command, EncodeError, Isa

__all__ = ["MAGIC", "FORMAT_VERSION", "MAX_STREAM_BYTES", "StreamFile", "pack_stream", "unpack_stream",
           "write_stream", "read_stream", "write_jsonl", "read_jsonl", "dumps_jsonl", "loads_jsonl", "read_any"]

MAGIC = b"CIMSTRM\0"
FORMAT_VERSION = 1
#: Largest stream file the loaders read (1 GiB): in memory a stream word costs ~40 bytes as a Python integer,
#: so a larger file would need tens of GiB; the largest stream the kit builds (all-MiniLM-L6-v2) is ~30 MB.
MAX_STREAM_BYTES = 1 << 30
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
    """Parse a binary container; check every header field, both checksums and (optionally) the configuration.

    The configuration block goes through the same validation as a configuration file; the command count in
    the header must match the commands in the body.
    """
    fixed = _HEAD.size + _HEAD_CRC.size
    if len(blob) < fixed:
        raise StreamError(f"{origin}: truncated header ({len(blob)} bytes, need {fixed})")
    magic, version, word_bits, hw_hash, jlen, nwords, ncmds, body_crc = _HEAD.unpack_from(blob)
    if magic != MAGIC:
        raise StreamError(f"{origin}: not a CIM command stream (bad magic {magic!r})")
    if version != FORMAT_VERSION:
        raise StreamError(f"{origin}: unsupported format version {version} (this kit reads {FORMAT_VERSION})")
    if jlen > MAX_CONFIG_BYTES:
        raise StreamError(f"{origin}: configuration block length {jlen} exceeds the limit of {MAX_CONFIG_BYTES} "
                          f"bytes (corrupt header)")
    (head_crc,) = _HEAD_CRC.unpack_from(blob, _HEAD.size)
    cfg_json = blob[fixed:fixed + jlen]
    if len(cfg_json) < jlen:
        raise StreamError(f"{origin}: truncated configuration block ({len(cfg_json)} of {jlen} bytes)")
    if zlib.crc32(blob[:_HEAD.size] + cfg_json) != head_crc:
        raise StreamError(f"{origin}: header checksum mismatch (corrupt header)")
    try:
        data = json.loads(cfg_json.decode("utf-8"))
    except (ValueError, RecursionError):
        raise StreamError(f"{origin}: bad configuration block: not UTF-8 JSON") from None
    try:
        cfg = HwConfig.from_dict(data, origin="configuration block")
    except ConfigError as exc:
        raise StreamError(f"{origin}: bad {exc}") from None
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
    found = _count_commands(isa, words)
    if ncmds != found:
        raise StreamError(f"{origin}: header says {ncmds} commands, the body holds {found}")
    return StreamFile(cfg, words, ncmds)


def write_stream(path: str | os.PathLike, cfg: HwConfig, cmds: Sequence[Command]) -> int:
    """Encode ``cmds`` and write the binary container to ``path`` atomically; return the word count."""
    words = Isa.of(cfg).encode(cmds)
    atomic_write_bytes(path, pack_stream(cfg, words, commands=len(cmds)))
    return len(words)


def _read(path: str | os.PathLike) -> bytes:
    return read_limited(path, MAX_STREAM_BYTES, what="command stream", error=StreamError)


def read_stream(path: str | os.PathLike, *, expect: HwConfig | None = None) -> StreamFile:
    """Load a binary container from ``path`` (see :func:`unpack_stream`)."""
    return unpack_stream(_read(path), expect=expect, origin=str(path))


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


def _exact_int(v) -> bool:
    return type(v) is int


def loads_jsonl(text: str | bytes, *, expect: HwConfig | None = None,
                origin: str = "stream") -> tuple[HwConfig, list[Command]]:
    """Parse a JSONL dump (text, or bytes holding UTF-8); return the configuration and the checked commands.

    Every problem raises :class:`StreamError` naming ``origin`` and the line number.
    """
    if isinstance(text, (bytes, bytearray)):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as exc:
            line = text.count(b"\n", 0, exc.start) + 1
            raise StreamError(f"{origin}:{line}: not UTF-8 text (byte {exc.start})") from None
    lines = text.split("\n")
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise StreamError(f"{origin}: empty file")

    def parse(lineno: int, line: str):
        try:
            return json.loads(line)
        except ValueError:
            raise StreamError(f"{origin}:{lineno}: not a JSON object (invalid JSON)") from None
        except RecursionError:
            raise StreamError(f"{origin}:{lineno}: JSON nested too deeply") from None

    head = parse(1, lines[0])
    if not isinstance(head, dict) or head.get("format") != "cim-stream-jsonl":
        raise StreamError(f"{origin}:1: not a CIM command stream dump (the header must be a JSON object with "
                          f'"format": "cim-stream-jsonl")')
    version = head.get("version")
    if not _exact_int(version) or version != FORMAT_VERSION:
        raise StreamError(f"{origin}:1: unsupported format version {_show(version)} (this kit reads "
                          f"{FORMAT_VERSION})")
    try:
        cfg = HwConfig.from_dict(head.get("hw"), origin="configuration \"hw\"")
    except ConfigError as exc:
        raise StreamError(f"{origin}:1: bad {exc}") from None
    if head.get("hw_hash") != cfg.arch_hash:
        raise StreamError(f"{origin}:1: configuration does not match its hash (hw_hash {_show(head.get('hw_hash'))})")
    isa = Isa.of(cfg)
    word_bits = head.get("word_bits")
    if not _exact_int(word_bits) or word_bits != isa.word_bits:
        raise StreamError(f"{origin}:1: word_bits {_show(word_bits)} does not match the configuration "
                          f"({isa.word_bits})")
    ncmds = head.get("commands")
    if not _exact_int(ncmds) or ncmds < 0:
        raise StreamError(f"{origin}:1: commands must be a non-negative integer, not {_show(ncmds)}")
    if expect is not None and expect.arch_hash != cfg.arch_hash:
        raise StreamError(f"{origin}: built for hardware {cfg.name!r} ({cfg.arch_hash}), not {expect.name!r} "
                          f"({expect.arch_hash})")
    cmds: list[Command] = []
    for lineno, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        obj = parse(lineno, line)
        if not isinstance(obj, dict):
            raise StreamError(f"{origin}:{lineno}: not a JSON object")
        i = obj.get("i")
        if not _exact_int(i) or i != len(cmds):
            raise StreamError(f"{origin}:{lineno}: command index {_show(i)}, expected {len(cmds)}")
        try:
            cmd = Command.from_json(obj)
            isa.encode([cmd])
        except EncodeError as exc:
            raise StreamError(f"{origin}:{lineno}: command {len(cmds)}: {exc.one_line()}") from None
        cmds.append(cmd)
    if ncmds != len(cmds):
        raise StreamError(f"{origin}: header says {ncmds} commands, file has {len(cmds)}")
    return cfg, cmds


def read_jsonl(path: str | os.PathLike, *, expect: HwConfig | None = None) -> tuple[HwConfig, list[Command]]:
    """Load a JSONL dump from ``path`` (see :func:`loads_jsonl`)."""
    return loads_jsonl(_read(path), expect=expect, origin=str(path))


def read_any(path: str | os.PathLike, *, expect: HwConfig | None = None) -> StreamFile:
    """Load a stream file of either format: ``.jsonl`` is a JSONL dump, ``.bin`` a binary container.

    A file with another name is recognised by its content (the container's magic bytes, or a JSONL header);
    anything else is a :class:`StreamError`. A JSONL dump is returned encoded, as the container would hold it.
    """
    name = str(path)
    raw = _read(path)
    if name.endswith(".jsonl") or (not name.endswith(".bin") and raw.lstrip()[:1] == b"{"):
        cfg, cmds = loads_jsonl(raw, expect=expect, origin=name)
        return StreamFile(cfg, tuple(Isa.of(cfg).encode(cmds)), len(cmds))
    if name.endswith(".bin") or raw.startswith(MAGIC):
        return unpack_stream(raw, expect=expect, origin=name)
    raise StreamError(f"{name}: not a command stream (expected a .bin container or a .jsonl dump)")
