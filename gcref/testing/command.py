"""``gcref check --against MODULE:FUNCTION --quantity Q``: the conformance suite from the shell.

The option wiring lives in :mod:`gcref.cli`; everything else is here: loading the function,
running the check, printing the table or JSON, and the exit code (0 passed, 1 failed, 2 bad
arguments with one ``Error:`` line).
"""

from __future__ import annotations

import importlib
import json
import os
import sys

from .conformance import QUANTITIES, check_implementation
from .frameworks import FRAMEWORKS

__all__ = ["load_implementation", "check_against"]


def load_implementation(spec: str):
    """The callable named by ``"package.module:function"`` (``function`` may be dotted:
    ``module:Class.method``). The current directory is importable, as with ``python -m``.

    Raises ``ValueError`` saying what is wrong: no colon, a module that cannot be imported, a
    missing attribute, or an object that is not callable.
    """
    if not isinstance(spec, str) or spec.count(":") != 1 or not all(spec.split(":")):
        raise ValueError(f"--against must be MODULE:FUNCTION (e.g. mypkg.metrics:my_gc), got {spec!r}")
    module_name, attr = spec.split(":")
    cwd = os.getcwd()
    added = cwd not in sys.path
    if added:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except Exception as err:  # noqa: BLE001 - any import failure is reported in one line
        raise ValueError(f"--against: cannot import module {module_name!r} "
                         f"({type(err).__name__}: {err})") from None
    finally:
        if added:
            sys.path.remove(cwd)
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"--against: module {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ValueError(f"--against: {spec} is a {type(obj).__name__}, not a function")
    return obj


def _rich_table(report):
    from rich.markup import escape
    from rich.table import Table
    table = Table(title=f"gcref conformance: {report.implementation} ({report.quantity}, "
                        f"{report.framework})")
    for col, justify in (("case", "left"), ("value", "right"), ("reference", "right"),
                         ("error", "right"), ("tolerance", "right"), ("result", "left")):
        table.add_column(col, justify=justify)
    fmt = (lambda x: "-" if x is None else f"{x:.6g}")
    for r in report.rows:
        result = "[green]pass[/green]" if r.passed else "[red]FAIL[/red]"
        if not r.passed and r.matches:
            result += " ~ " + escape(", ".join(r.matches))
        if not r.passed and r.detail:
            result += " " + escape(r.detail)
        table.add_row(escape(r.case), fmt(r.value), fmt(r.reference), f"{r.error:.2e}",
                      f"{r.tolerance:.0e}", result)
    return table


def check_against(spec: str, quantity: str, framework: str = "numpy", json_path: str | None = None,
                  console=None, err_console=None) -> int:
    """Run the conformance suite for ``quantity`` against the function ``spec``; return the exit code.

    Prints the table (or, with ``json_path="-"``, the JSON report on stdout; with a file name,
    also writes it there). Bad arguments print one ``Error:`` line on stderr and return 2.
    """
    from rich.console import Console
    from rich.markup import escape
    console = console or Console()
    err_console = err_console or Console(stderr=True)

    def error(message):
        err_console.print(f"[bold red]Error:[/bold red] {escape(message)}", highlight=False, soft_wrap=True)
        return 2

    if quantity not in QUANTITIES:
        return error(f"--quantity must be one of {', '.join(QUANTITIES)}, got {quantity!r}")
    if framework not in FRAMEWORKS:
        return error(f"--framework must be one of {', '.join(FRAMEWORKS)}, got {framework!r}")
    try:
        fn = load_implementation(spec)
    except ValueError as err:
        return error(str(err))
    try:
        report = check_implementation(quantity, fn, framework=framework)
    except ImportError as err:
        return error(f"--framework {framework}: {err}")
    payload = json.dumps(report.as_dict(), indent=2, default=float)
    if json_path == "-":
        sys.stdout.write(payload + "\n")
    else:
        console.print(_rich_table(report))
        console.print(escape(report.summary()), highlight=False)
        if json_path:
            from ..nn.params_io import atomic_write
            try:
                atomic_write(json_path, lambda fh: fh.write(payload.encode()))
            except OSError as err:
                return error(f"--json: cannot write {json_path!r} ({err})")
    return 0 if report.passed else 1
