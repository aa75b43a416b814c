"""Which CSV columns feed which input and target of a spec — the rule `csv(...)` binds by:

- a target reads the column named after it (`target species` reads `species`); a target no
  column is named after reads the columns `target=` lists (one such target at most);
- the model's one input reads the columns `inputs=` lists, else every column that is not a
  target, in file order; several inputs each read the column named after them (NAME) or
  the columns NAME_0, NAME_1, ...;
- `inputs=` and `target=` take header names, 0-based column numbers (negative from the end) and
  inclusive ranges "first:last" of either, alone or in a list.

A target column whose cells are all text (none a number) holds class labels: they become class
ids by their position in the sorted list of the labels (or in a stored run's list)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from nndsl.data.binding import Binding, Request
from nndsl.data.csv_cache import CachedTable
from nndsl.errors import NndslError, did_you_mean, require
from nndsl.table_files import Table, is_number, unknown_label

Columns = str | int | tuple[str, ...] | tuple[int, ...] | None


def _one(key: str | int, table: Table, setting: str) -> int:
    names = table.names
    if isinstance(key, int):
        require(-len(names) <= key < len(names), setting, key,
                f"a column number in [{-len(names)}, {len(names) - 1}]")
        return key % len(names)
    if key in names:
        return names.index(key)
    if key.lstrip("-").isdigit():
        return _one(int(key), table, setting)
    if not table.header:
        raise NndslError(f"{setting} '{key}' names a column, but the file has no header",
                         hint="give 0-based column numbers, or header = true")
    raise NndslError(f"the CSV header has no column '{key}'", expected=", ".join(names),
                     received=key, hint=did_you_mean(key, names))


def select(keys: Columns, table: Table, setting: str) -> list[int]:
    """The columns `keys` name, in the order given; a "first:last" string is every column from
    first to last (both included) unless a column is called exactly that."""
    out: list[int] = []
    for key in keys if isinstance(keys, tuple) else (keys,) if keys is not None else ():
        if isinstance(key, str) and ":" in key and key not in table.names:
            first, last = (_one(part.strip(), table, setting) for part in key.split(":", 1))
            require(first <= last, setting, key, "a range whose first column comes before its "
                    "last in the file")
            out += range(first, last + 1)
        else:
            out.append(_one(key, table, setting))
    require(len(set(out)) == len(out), setting, keys, "distinct columns")
    return out


def _targets(request: Request, table: Table, listed: list[int]) -> dict[str, list[int]]:
    named = {t: [table.names.index(t)] for t in request.targets
             if table.header and t in table.names}
    unmatched = [t for t in request.targets if t not in named]
    left = [j for j in listed if [j] not in named.values()]
    if len(unmatched) == 1 and left:
        named[unmatched.pop()] = left
        left = []
    if unmatched:
        raise NndslError(f"target '{unmatched[0]}' has no column in {table.file.name}",
                         expected=f"a column named '{unmatched[0]}'" +
                         (", or target=\"COLUMN\"" if len(unmatched) == 1 else ""),
                         received=", ".join(table.names),
                         hint=did_you_mean(unmatched[0], table.names) or "name the target "
                         "after its column, or name the column with target=\"COLUMN\"")
    if left:
        unread = ", ".join(repr(table.names[j]) for j in left)
        raise NndslError(f"target= lists column {unread}, which no target reads",
                         expected="targets " + ", ".join(request.targets) + " read columns "
                         + ", ".join(repr(table.names[c[0]]) for c in named.values()),
                         hint="remove it from target=, or declare a target named after it")
    return named


def _inputs(request: Request, table: Table, listed: list[int] | None,
            taken: set[int]) -> dict[str, list[int]]:
    if listed is not None:
        if len(request.inputs) != 1:
            raise NndslError(f"inputs= lists the columns of a model's one input; this model "
                             f"has {len(request.inputs)}: {', '.join(request.inputs)}",
                             hint="name each input's columns NAME or NAME_0, NAME_1, ...")
        both = [table.names[j] for j in listed if j in taken]
        if both:
            raise NndslError(f"column '{both[0]}' is both an input (inputs=) and a target")
        return {request.inputs[0]: listed}
    if len(request.inputs) == 1:
        rest = [j for j in range(len(table.names)) if j not in taken]
        require(len(rest) > 0, "target", tuple(table.names[j] for j in taken),
                "to leave at least one input column")
        return {request.inputs[0]: rest}
    return {name: _named_columns(name, table) for name in request.inputs}


def _named_columns(name: str, table: Table) -> list[int]:
    names = table.names
    if name in names:
        return [names.index(name)]
    wide = []
    while f"{name}_{len(wide)}" in names:
        wide.append(names.index(f"{name}_{len(wide)}"))
    if not wide:
        raise NndslError(f"input '{name}' has no column in {table.file.name}",
                         expected=f"a column '{name}', or columns {name}_0, {name}_1, ...",
                         received=", ".join(names), hint=did_you_mean(name, names) or
                         "a model with several inputs reads the columns named after them")
    return wide


def bind_columns(table: Table, request: Request, target: Columns,
                 inputs: Columns) -> dict[str, list[int]]:
    """Array name -> its columns, by the module's rule; a binding that cannot work is an
    error naming the input or target and the columns there are."""
    named = _targets(request, table, select(target, table, "target"))
    taken = {j for cols in named.values() for j in cols}
    listed = select(inputs, table, "inputs") if inputs is not None else None
    return {**_inputs(request, table, listed, taken), **named}


def _is_text(cells: list[str]) -> bool:
    return bool(cells) and not any(is_number(c) for c in cells)


def target_array(table: Table, name: str, cols: list[int],
                 stored: Binding | None) -> tuple[np.ndarray, list[str] | None]:
    """A target's values as float32 [rows, columns], and its labels when its column is text."""
    known = stored.labels.get(name) if stored is not None else None
    if len(cols) == 1 and isinstance(table, CachedTable):  # a large file, converted
        found = table.label_ids(cols[0], known)
        if found is not None:
            return found[0].astype(np.float32)[:, None], found[1]
    elif len(cols) == 1 and _is_text(table.column(cols[0])):
        ids, labels = _label_ids(table, cols[0], known)
        return ids.astype(np.float32)[:, None], labels
    return table.numbers(cols).astype(np.float32), known


def _label_ids(table: Table, j: int, known: list[str] | None) -> tuple[np.ndarray, list[str]]:
    """Class ids of a text column: positions in the stored labels, else in the sorted labels."""
    cells = table.column(j)
    for i, cell in enumerate(cells):
        if not cell:
            raise table.cell_error(i, j, "an empty cell is not a class label",
                                   expected="a class label", received="an empty cell",
                                   hint="nndsl does not fill in missing values: drop those rows")
    labels = known if known is not None else sorted(set(cells))
    index = {label: k for k, label in enumerate(labels)}
    for i, cell in enumerate(cells):
        if cell not in index:
            what, details = unknown_label(cell, labels)
            raise table.cell_error(i, j, what, **details, hint=did_you_mean(cell, labels)
                                   or "the run's labels are fixed when it starts (data.json)")
    return np.asarray([index[c] for c in cells], np.int64), list(labels)


def listed_names(table: Table, columns: Iterable[int]) -> list[str]:
    return [table.names[j] for j in columns]
