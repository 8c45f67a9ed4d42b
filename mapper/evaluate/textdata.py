"""Calibration and held-out English text, extracted at run time from the Python standard library's docstrings.

Nothing is downloaded and nothing is shipped: the docstrings of a fixed list of standard-library modules (and
of their public classes, functions and methods) are split into sentences, filtered to plain English prose
(length, characters, no code), deduplicated and sorted. Each sentence goes to the held-out set or the
calibration set by a hash of its text, so the two sets are disjoint and the split does not depend on the
order of extraction. The result is deterministic for a given Python version.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import inspect
import re
import warnings

__all__ = ["MODULES", "all_sentences", "calibration_sentences", "heldout_sentences", "HELDOUT_FRACTION"]

# Fixed list of standard-library modules whose documentation is mostly prose.
MODULES = (
    "abc", "argparse", "ast", "asyncio", "base64", "bisect", "calendar", "cmd", "codecs", "collections",
    "concurrent.futures", "configparser", "contextlib", "copy", "csv", "dataclasses", "datetime", "decimal",
    "difflib", "dis", "doctest", "email", "email.message", "email.utils", "enum", "fileinput", "fnmatch",
    "fractions", "ftplib", "functools", "getopt", "gettext", "glob", "gzip", "hashlib", "heapq", "hmac",
    "html.parser", "http.client", "http.cookiejar", "http.server", "imaplib", "importlib", "inspect", "io",
    "ipaddress", "itertools", "json", "locale", "logging", "logging.handlers", "lzma", "mailbox", "mimetypes",
    "multiprocessing", "netrc", "numbers", "operator", "optparse", "os", "pathlib", "pdb", "pickle", "pickletools",
    "pkgutil", "platform", "poplib", "pprint", "profile", "pstats", "queue", "quopri", "random", "re", "sched",
    "secrets", "selectors", "shelve", "shlex", "shutil", "signal", "smtplib", "socket", "socketserver",
    "sqlite3", "ssl", "statistics", "string", "struct", "subprocess", "sysconfig", "tarfile", "tempfile",
    "textwrap", "threading", "timeit", "tokenize", "trace", "traceback", "types", "typing", "unittest",
    "unittest.mock", "urllib.parse", "urllib.request", "uuid", "warnings", "wave", "weakref", "xml.dom.minidom",
    "xml.etree.ElementTree", "zipfile", "zipimport",
)
HELDOUT_FRACTION = 0.2
MIN_CHARS, MAX_CHARS, MIN_WORDS = 40, 220, 7

_SPLIT = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")
_ALLOWED = re.compile(r"^[A-Za-z0-9 ,.;:'()\-]+$")
_CODEISH = re.compile(r"(::|>>>|\.\.\.|__|\(\)|[a-z][A-Z]|\b[a-z]+_[a-z]+\b|\w\.\w|\be\.g\b|\bi\.e\b)")


def _docstrings(module_name: str) -> list[str]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            module = importlib.import_module(module_name)
    except Exception:  # noqa: BLE001 - a module missing from this Python build is simply skipped
        return []
    docs = [inspect.getdoc(module) or ""]
    for name in sorted(vars(module)):
        if name.startswith("_"):
            continue
        obj = getattr(module, name, None)
        if getattr(obj, "__module__", None) != module.__name__:
            continue
        if inspect.isclass(obj) or inspect.isfunction(obj) or inspect.isbuiltin(obj):
            docs.append(inspect.getdoc(obj) or "")
        if inspect.isclass(obj):
            for attr in sorted(vars(obj)):
                if attr.startswith("_"):
                    continue
                member = vars(obj)[attr]
                if inspect.isfunction(member) or inspect.ismethoddescriptor(member):
                    docs.append(inspect.getdoc(member) or "")
    return docs


def _sentences(doc: str) -> list[str]:
    out = []
    for para in re.split(r"\n\s*\n", doc):
        text = " ".join(para.split())
        for sent in _SPLIT.split(text):
            sent = sent.strip()
            if not (MIN_CHARS <= len(sent) <= MAX_CHARS) or not sent.endswith("."):
                continue
            if not sent[0].isupper() or not _ALLOWED.match(sent) or _CODEISH.search(sent):
                continue
            words = sent.split()
            if len(words) < MIN_WORDS or sum(w.isalpha() for w in words) < 0.7 * len(words):
                continue
            out.append(sent)
    return out


@functools.lru_cache(maxsize=1)
def all_sentences() -> tuple[str, ...]:
    """Return every extracted sentence, deduplicated and sorted.

    The extraction runs in a fresh, isolated interpreter (``python -I`` on this file), because what a module
    exposes can change with what else a process has imported (e.g. after a transformers model is loaded):
    the text sets must not depend on import order.
    """
    import json
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-I", __file__], capture_output=True, text=True, check=True).stdout
    return tuple(json.loads(out))


def _extract() -> tuple[str, ...]:
    found: set[str] = set()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecated aliases (typing.io, ...) warn when touched
        for name in MODULES:
            for doc in _docstrings(name):
                found.update(_sentences(doc))
    return tuple(sorted(found))


def _is_heldout(sentence: str) -> bool:
    digest = hashlib.sha256(sentence.encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "big") < HELDOUT_FRACTION * 2**32


def calibration_sentences() -> list[str]:
    """Return the calibration sentences (disjoint from :func:`heldout_sentences`), sorted."""
    return [s for s in all_sentences() if not _is_heldout(s)]


def heldout_sentences(n: int | None = 256) -> list[str]:
    """Return ``n`` held-out sentences (all of them for ``None``), a fixed spread over the sorted set."""
    held = [s for s in all_sentences() if _is_heldout(s)]
    if n is None or n >= len(held):
        return held
    step = len(held) / n
    return [held[int(j * step)] for j in range(n)]


if __name__ == "__main__":  # used by all_sentences(): extraction in a clean interpreter
    import json
    import sys
    json.dump(list(_extract()), sys.stdout)
