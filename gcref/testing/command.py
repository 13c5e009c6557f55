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
from .conformance.report import result_text
from .frameworks import FRAMEWORKS

__all__ = ["load_implementation", "check_against", "check_options", "OPTION_QUANTITIES"]


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


def _rich_table(report, failures_only: bool = False):
    from rich.markup import escape
    from rich.table import Table
    table = Table(title=f"gcref conformance: {report.implementation} ({report.quantity}, "
                        f"{report.framework})")
    for col, justify in (("case", "left"), ("value", "right"), ("reference", "right"),
                         ("error", "right"), ("tolerance", "right"), ("result", "left")):
        table.add_column(col, justify=justify)
    fmt = (lambda x: "-" if x is None else f"{x:.6g}")
    precision = report.diagnosis.precision if report.diagnosis else "float64"
    for r in report.rows:
        if failures_only and r.passed:
            continue
        text = escape(result_text(r, precision))
        result = (f"[green]{text}[/green]" if r.passed else
                  f"[yellow]{text}[/yellow]" if text.startswith("float32") else f"[red]{text}[/red]")
        table.add_row(escape(r.case), fmt(r.value), fmt(r.reference), f"{r.error:.2e}",
                      f"{r.tolerance:.0e}", result)
    return table


#: The command-line options of the conformance suite and the quantities each applies to.
OPTION_QUANTITIES = {
    "rtol": ("gc", "cdnv", "nc", "papyan", "few_shot_summary", "ncc_bound"),
    "precision": ("gc", "cdnv", "nc", "papyan"),
    "accept": ("gc", "cdnv", "nc", "papyan", "ncc", "few_shot", "few_shot_summary", "ncc_bound"),
    "labels": ("cdnv", "nc", "papyan"),
    "keys": ("papyan",),
}


def check_options(quantity: str, options: dict | None) -> dict:
    """The keyword arguments of the check for ``quantity`` from the command line's ``options``
    (``None`` values are left out; ``keys`` and ``accept`` are comma-separated lists). Raises
    ``ValueError`` naming an option that does not apply to ``quantity``."""
    out = {}
    for name, value in (options or {}).items():
        if value is None:
            continue
        if name not in OPTION_QUANTITIES:
            raise ValueError(f"unknown option {name!r}")
        if quantity not in OPTION_QUANTITIES[name]:
            raise ValueError(f"--{name} applies to --quantity {', '.join(OPTION_QUANTITIES[name])}, "
                             f"not {quantity}")
        if name == "keys" and value != "returned" or name == "accept":
            value = tuple(v.strip() for v in value.split(",") if v.strip())
        out[name] = value
    return out


def check_against(spec: str, quantity: str, framework: str = "numpy", json_path: str | None = None,
                  console=None, err_console=None, *, failures_only: bool = False,
                  options: dict | None = None) -> int:
    """Run the conformance suite for ``quantity`` against the function ``spec``; return the exit code.

    Prints the table (only the failing rows with ``failures_only``; or, with ``json_path="-"``,
    the JSON report on stdout; with a file name, also writes it there). ``options``: ``rtol``,
    ``keys``, ``precision``, ``accept``, ``labels`` as given on the command line (see
    :func:`check_options`). Bad arguments print one ``Error:`` line on stderr and return 2.
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
        kwargs = check_options(quantity, options)
    except ValueError as err:
        return error(str(err))
    try:
        report = check_implementation(quantity, fn, framework=framework, **kwargs)
    except ImportError as err:
        return error(f"--framework {framework}: {err}")
    except (TypeError, ValueError) as err:       # an option's value the check refuses
        return error(str(err))
    payload = json.dumps(report.as_dict(), indent=2, default=float)
    if json_path == "-":
        sys.stdout.write(payload + "\n")
    else:
        console.print(_rich_table(report, failures_only))
        console.print(escape(report.summary()), highlight=False)
        if json_path:
            from ..nn.params_io import atomic_write
            try:
                atomic_write(json_path, lambda fh: fh.write(payload.encode()))
            except OSError as err:
                return error(f"--json: cannot write {json_path!r} ({err})")
    return 0 if report.passed else 1
