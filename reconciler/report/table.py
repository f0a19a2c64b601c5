"""Aligned text tables, the layout ``kubectl get`` prints.

One implementation for every command that prints rows (``sync``, ``eks diff``, ``eks sync``):
a reader who learns to scan one table, or a script that splits its columns on runs of
spaces, can read all of them the same way.
"""

from __future__ import annotations

from collections.abc import Sequence


def aligned(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Each column padded to its widest cell, two spaces apart, no trailing blanks; one line per
    row after the header, each ending in a newline."""
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(header)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "".join(fmt.format(*r).rstrip() + "\n" for r in [header, *rows])
