"""The ``gcref`` command line (typer): the one place where gcref's app is built.

``check`` is defined here; ``train``, ``sweep``, ``transfer`` and ``plot`` come from
:mod:`gcref.lab.commands`, which knows nothing of this module (:func:`gcref.lab.commands.register`
attaches them), so the import graph has no cycle: ``nn <- metrics <- train <- lab <- cli``.
"""

from __future__ import annotations

import json
import sys

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperCommand, TyperGroup

try:                       # typer >= 0.2x carries its own copy of click
    from typer._click.exceptions import ClickException
except ImportError:        # pragma: no cover - typer on the installed click
    from click import ClickException

from .lab.commands import error_line
from .lab.commands import register as _register_lab_commands
from .lab.tables import fitted_table


class _FlagsUntyped:
    """Help that shows a type only for options that take a value: ``--json`` is a flag, not
    ``--json <bool>``."""

    def get_params(self, ctx):
        params = super().get_params(ctx)
        for p in params:
            if getattr(p, "is_flag", False) and p.metavar is None:
                p.metavar = ""
        return params


class _Command(_FlagsUntyped, TyperCommand):
    """A ``gcref`` command (help without a type for flags)."""


class _OneLineErrors(_FlagsUntyped, TyperGroup):
    """gcref's command group: a usage error (``--steps 1.5``, an unknown option, a bad
    ``check --group``) prints one ``Error:`` line and exits 2, like every other bad input,
    instead of click's multi-line box."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except ClickException as err:
            error_line(err.format_message())
            sys.exit(err.exit_code)
        except typer.Abort:
            error_line("aborted")
            sys.exit(1)
        sys.exit(rv if isinstance(rv, int) and not isinstance(rv, bool) else 0)


app = typer.Typer(
    help="gcref: geometric complexity (GC) and neural collapse (NC) in transfer learning, "
         "computable and checkable (Munn, Dherin & Gonzalvo, NeurIPS 2024).",
    add_completion=False,
    cls=_OneLineErrors,
)
# Wide enough for the check names when output is not a terminal (CI logs, pipes).
console = Console(width=None if sys.stdout.isatty() else 160)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("gcref")
    except PackageNotFoundError:          # running from a source tree that is not installed
        return "unknown (not installed)"


def _print_version(value: bool):
    if value:
        typer.echo(f"gcref {_version()}")
        raise typer.Exit(0)


@app.callback(invoke_without_command=True)
def _root(
    ctx: typer.Context,
    version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                 help="Print gcref's version and exit."),
):
    """gcref: geometric complexity and neural collapse, computable and checkable."""
    if ctx.invoked_subcommand is None:       # bare `gcref`: the help, and success
        typer.echo(ctx.get_help())
        raise typer.Exit(0)


def _print_results(results, show_all: bool) -> None:
    rows = []
    for r in results:
        if r.skipped:
            rows.append((escape(r.name), "-", "-", f"[yellow]SKIPPED[/yellow] {escape(r.detail)}"))
        elif show_all or not r.passed:
            rows.append((escape(r.name), f"{r.error:.2e}", f"{r.tolerance:.0e}",
                         "[green]pass[/green]" if r.passed else f"[red]FAIL[/red] {escape(r.detail)}"))
    console.print(fitted_table("gcref verification", [("check", False), ("max rel. error", True),
                                                      ("tolerance", True), ("result", False)], rows))


@app.command(cls=_Command)
def check(
    json_path: str = typer.Option(None, "--json", help="Also write the results as JSON to this file ('-' for stdout)."),
    group: list[str] = typer.Option(None, "--group", "-g", help="Run only these check groups (repeatable)."),
    seed: int = typer.Option(0, help="Seed for the random networks and directions."),
    failures_only: bool = typer.Option(False, "--failures-only", help="Print only failing rows."),
    backend: str = typer.Option("numpy", help="'numpy' (the reference) or 'cuda' (adds gcref_cuda agreement checks)."),
    against: str = typer.Option(None, "--against", help="MODULE:FUNCTION: run the conformance suite against your implementation instead."),
    quantity: str = typer.Option("gc", "--quantity", help="With --against: gc, cdnv, nc, papyan, estimator, ncc, few_shot, few_shot_summary or ncc_bound."),
    framework: str = typer.Option("numpy", "--framework", help="With --against: numpy, torch or jax (what your function receives)."),
    rtol: float = typer.Option(None, "--rtol", help="With --against: relative tolerance (default 1e-9)."),
    keys: str = typer.Option(None, "--keys", help="With --against --quantity papyan: comma-separated keys to compare, or 'returned'."),
    precision: str = typer.Option(None, "--precision", help="With --against: float64 (default) or float32 (rows within float32 rounding pass)."),
    accept: str = typer.Option(None, "--accept", help="With --against: comma-separated convention keys accepted as correct."),
    labels: str = typer.Option(None, "--labels", help="With --against (feature quantities): as_is (default) or contiguous."),
):
    """Verify everything numerically and print a table; exit code 1 if any check fails.

    Hand-written VJPs, JVPs, local and network Jacobians against central finite differences and
    against each other, on seeded random networks of every layer type and zoo architecture, plus
    every group later parts of gcref register (metrics, estimators, bounds, training, backends).
    """
    if against is not None:   # the conformance suite (gcref.testing.command)
        from .testing.command import check_against
        options = {"rtol": rtol, "keys": keys, "precision": precision, "accept": accept, "labels": labels}
        raise typer.Exit(code=check_against(against, quantity, framework, json_path, console,
                                            failures_only=failures_only, options=options))
    from .checks import GROUPS, run_checks, summarize
    if backend not in ("numpy", "cuda"):
        raise typer.BadParameter(f"must be 'numpy' or 'cuda', got {backend!r}", param_hint="'--backend'")
    groups = list(group) if group else [g for g in GROUPS if backend == "cuda" or not g.startswith("cuda")]
    unknown = [g for g in groups if g not in GROUPS]
    if unknown:
        raise typer.BadParameter(f"unknown group(s) {unknown}; valid: {', '.join(GROUPS)}",
                                 param_hint="'--group'")
    to_stdout = json_path == "-"
    out_console = Console(stderr=True) if to_stdout else console
    from rich.progress import Progress
    with Progress(console=out_console, transient=True) as progress:
        task = progress.add_task("checking", total=len(groups))

        def step(name):
            progress.update(task, description=f"checking {name}")
            progress.advance(task)
        results = run_checks(groups, seed=seed, progress=step)
    passed, failed, skipped = summarize(results)
    if not to_stdout:
        _print_results(results, show_all=not failures_only)
        console.print(f"[bold]{passed} passed, {failed} failed, {skipped} skipped[/bold]")
    if json_path:
        payload = json.dumps({"passed": passed, "failed": failed, "skipped": skipped,
                              "results": [r.as_dict() for r in results]}, indent=2, default=float)
        if to_stdout:
            sys.stdout.write(payload + "\n")
        else:
            from .nn.params_io import atomic_write
            atomic_write(json_path, lambda fh: fh.write(payload.encode()))
    raise typer.Exit(code=1 if failed else 0)


_register_lab_commands(app, cls=_Command)


def main():  # pragma: no cover - entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
