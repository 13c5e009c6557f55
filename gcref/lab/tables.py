"""Tables that never cut a number, at any terminal width and when piped.

:func:`fitted_table` is the one table of gcref's command line. It is laid out when it is
printed, for the width it is printed at (a terminal's, ``$COLUMNS``, or 80 when piped):

1. every column at full width, if that fits;
2. else the headers wrap at their spaces (``geom. coll. ↓`` on three lines), text cells wrap at
   theirs;
3. else whole columns are left out, the least important first, and a line under the table says
   which, and where the whole table is (``summary.csv``, ``--json``).

A number is never cut, folded or replaced by an ellipsis: a numeric column is as wide as its
widest cell, or it is not shown.
"""

from __future__ import annotations

import textwrap

from rich import box
from rich.cells import cell_len
from rich.table import Table
from rich.text import Text

__all__ = ["fitted_table", "Column"]


class Column:
    """A column of a :func:`fitted_table`: its header, whether its cells are numbers (right
    aligned, never wrapped), and ``drop``: ``0`` never left out, else left out before every
    column of a smaller ``drop`` when the table does not fit."""

    __slots__ = ("head", "numeric", "drop")

    def __init__(self, head: str, numeric: bool = True, drop: int = 0):
        self.head, self.numeric, self.drop = head, numeric, drop


def _as_column(spec) -> Column:
    if isinstance(spec, Column):
        return spec
    return Column(*spec)            # (head, numeric) or (head, numeric, drop)


class _FittedTable:
    """A renderable that lays its table out for the width it is rendered at."""

    def __init__(self, title, columns, rows, where):
        self.title, self.where = title, where
        self.columns = [_as_column(c) for c in columns]
        self.rows = [[str(c) for c in r] for r in rows]
        self.plain = [[Text.from_markup(c).plain for c in r] for r in self.rows]   # as drawn

    def _cell_width(self, i) -> int:
        return max([cell_len(r[i]) for r in self.plain] + [1])

    @staticmethod
    def _longest_word(text) -> int:
        return max([cell_len(w) for w in text.split()] + [1])

    def _table(self, keep, compact, fold=False) -> Table:
        """The table of columns ``keep``; ``needed``: the narrowest it can be drawn without
        cutting a cell (its columns' widths, one space of padding either side of each but the
        outer ones, a space between columns and one at each edge)."""
        t = Table(box=box.SIMPLE_HEAD, pad_edge=False)
        widths = []
        for i in keep:
            col = self.columns[i]
            if col.numeric:
                width = self._cell_width(i)
                head = col.head
                if compact:      # the header wraps at its spaces, to the cells' width
                    width = max(width, self._longest_word(head))
                    head = "\n".join(textwrap.wrap(head, width, break_long_words=False)) or head
                width = max(width, max(cell_len(line) for line in head.split("\n")))
                widths.append(width)
                t.add_column(head, justify="right", no_wrap=not fold, width=None if fold else width,
                             min_width=width, overflow="fold")
            else:                # text wraps at its spaces, never inside a word
                words = max([self._longest_word(r[i]) for r in self.plain]
                            + [self._longest_word(col.head) if compact else cell_len(col.head)])
                widths.append(words)
                t.add_column(col.head, min_width=words, overflow="fold")
        for r in self.rows:
            t.add_row(*[r[i] for i in keep])
        t.needed = sum(widths) + 3 * len(widths) - 1
        return t

    def layout(self, console, options):
        """``(table, left_out)``: the table that fits ``options.max_width`` (see the module's
        docstring) and the headers of the columns it leaves out."""
        width = options.max_width
        keep = list(range(len(self.columns)))

        def fits(table):
            return table.needed <= width
        for compact in (False, True):
            table = self._table(keep, compact)
            if fits(table):
                return table, []
        order = sorted((i for i, c in enumerate(self.columns) if c.drop),
                       key=lambda i: (-self.columns[i].drop, -i))
        left_out = []
        for i in order:
            keep.remove(i)
            left_out.append(self.columns[i].head)
            table = self._table(keep, True)
            if fits(table):
                return table, left_out
        # narrower than the columns that cannot be left out: rich folds them (every digit shown)
        return self._table(keep, True, fold=True), left_out

    def __rich_console__(self, console, options):
        table, left_out = self.layout(console, options)
        yield Text(self.title, style="italic")   # above, not inside: a narrow table would fold it
        yield table
        if left_out:
            where = f"; the full table: {self.where}" if self.where else ""
            yield Text(f"Left out to fit {options.max_width} columns: {', '.join(left_out)}{where}.")


def fitted_table(title, columns, rows, where: str | None = None):
    """A table of ``rows`` (lists of cell strings, rich markup allowed) under ``columns`` (:class:`Column`, or
    ``(head, numeric[, drop])`` tuples) that fits the width it is printed at without cutting a
    cell; ``where`` names the full table for the note when columns are left out."""
    return _FittedTable(title, columns, rows, where)
