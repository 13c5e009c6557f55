"""README.md runs as written: every ```python block and every ``gcref ...`` command of its shell
blocks (```bash / ```sh / ```console) is executed, in order, all in one folder, as a reader
following it top to bottom does (so two examples that write the same folder collide here as they
would for the reader; a fast test checks that every example writes its own folder).

Blocks are found when the tests are collected, so sections added to the README later are
picked up without touching this file. Python blocks run in a fresh namespace (they must import
what they use); shell lines run their ``gcref`` commands (other commands of a line, such as
``pip install``, are left to the set-up they describe) through gcref's typer app, in order, and
must exit with 0. Blocks whose commands take more than ~20 s (the full ``gcref check``, sweeps)
are marked slow.
"""

import importlib.util
import os
import re
import shlex

import pytest
from typer.testing import CliRunner

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(REPO, "README.md")
SHELL = ("bash", "sh", "shell", "console")
#: Substrings that make a block take more than ~20 s on two cores.
SLOW = ("gcref check", "gcref sweep", "gcref transfer", "lab.run_sweep", "lab.run_transfer")
#: Optional packages a block may import (the README says so next to it): without them installed
#: the block is skipped, visibly, with the reason; a failure where the test extra installs them
#: (tests/conftest.py).
OPTIONAL = ("torch", "jax", "ray")


def optional_imports(code):
    """The optional packages a Python block imports (``import torch``, ``from jax import ...``)."""
    return [name for name in OPTIONAL
            if re.search(rf"^\s*(import|from)\s+{name}\b", code, re.M)]


def readme_blocks(path=README):
    """``[(language, first line number, code)]`` of the fenced code blocks of a Markdown file."""
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    blocks = []
    for m in re.finditer(r"^```([\w+-]*)[^\n]*\n(.*?)^```[ \t]*$", text, re.M | re.S):
        line = text.count("\n", 0, m.start()) + 1
        blocks.append((m.group(1).lower(), line, m.group(2)))
    return blocks


def gcref_commands(code):
    """The ``gcref ...`` commands of a shell block, in order (comments and other commands
    dropped; ``a && gcref b`` gives ``gcref b``)."""
    out = []
    for raw in code.splitlines():
        line = raw.strip()
        if line.startswith("$ "):
            line = line[2:]
        if not line or line.startswith("#"):
            continue
        words = shlex.split(line, comments=True)
        segment = []
        for w in words + ["&&"]:
            if w in ("&&", ";", "||"):
                if segment and segment[0] == "gcref":
                    out.append(segment)
                segment = []
            else:
                segment.append(w)
    return out


def _cases():
    cases = []
    for lang, line, code in readme_blocks():
        if lang == "python":
            kind = "python"
        elif lang in SHELL and gcref_commands(code):
            kind = "shell"
        else:
            continue
        marks = [pytest.mark.slow] if any(s in code for s in SLOW) else []
        missing = [m for m in optional_imports(code) if importlib.util.find_spec(m) is None]
        if kind == "python" and missing:
            marks.append(pytest.mark.skip(reason=f"README block at line {line}: could not import "
                                                 f"{missing[0]!r} (pip install -e '.[test]' installs it)"))
        cases.append(pytest.param(kind, code, id=f"{kind}-line{line}", marks=marks))
    return cases


def test_the_readme_has_blocks_to_run():
    kinds = [p.values[0] for p in _cases()]
    assert kinds.count("python") >= 5 and kinds.count("shell") >= 2


def test_commands_are_extracted():
    assert gcref_commands("pip install -e . && gcref check   # verify\n# comment\ngcref plot runs/x\n") == \
        [["gcref", "check"], ["gcref", "plot", "runs/x"]]
    assert gcref_commands("pytest -q\n") == []


def test_optional_imports_are_found():
    assert optional_imports("import numpy as np\nimport torch\nfrom jax import numpy\n") == ["torch", "jax"]
    assert optional_imports("x = 'torch'\n# import ray\n") == []


def _written_folders(kind, code):
    """The output folders a block writes: ``--out``/``-o`` of ``gcref train|sweep|transfer``
    (or the command's default) and the ``out_dir=`` / ``run_training(..., "folder")`` of Python."""
    import inspect

    from gcref.lab import commands
    out = []
    if kind == "shell":
        for cmd in gcref_commands(code):
            if len(cmd) > 1 and cmd[1] in ("train", "sweep", "transfer"):
                given = [cmd[i + 1] for i, w in enumerate(cmd[:-1]) if w in ("--out", "-o")]
                default = inspect.signature(getattr(commands, cmd[1])).parameters["out"].default.default
                out.append(given[-1] if given else default)
    else:
        out += re.findall(r"""out_dir\s*=\s*["']([^"']+)["']""", code)
        out += re.findall(r"""run_training\([^()]*?,\s*["']([^"']+)["']""", code)
    return out


def test_every_readme_example_writes_its_own_folder():
    seen = {}
    for p in _cases():
        kind, code = p.values
        for folder in _written_folders(kind, code):
            assert folder not in seen, (f"two README examples write {folder}: "
                                        f"{seen[folder]} and {p.id}")
            seen[folder] = p.id
    assert {"runs/train", "runs/sweep", "runs/transfer", "runs/py-transfer", "runs/demo"} <= set(seen)


@pytest.fixture(scope="module")
def reader_folder(tmp_path_factory):
    """One folder for every block, as a reader following the README uses."""
    return tmp_path_factory.mktemp("readme-reader")


@pytest.mark.parametrize("kind, code", _cases())
def test_readme_block_runs(kind, code, reader_folder, monkeypatch):
    monkeypatch.chdir(reader_folder)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    if kind == "python":
        namespace = {"__name__": "__readme__"}
        exec(compile(code, "README.md", "exec"), namespace)      # noqa: S102 - the README's own code
        return
    from gcref.cli import app
    runner = CliRunner()
    for cmd in gcref_commands(code):
        result = runner.invoke(app, cmd[1:])
        assert result.exit_code == 0, f"{' '.join(cmd)} exited {result.exit_code}:\n{result.output}"
