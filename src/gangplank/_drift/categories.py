"""Categorical input columns: strings, booleans and pandas categoricals, binned by category.

:meth:`Categories.fit` reads a table (a pandas DataFrame, taken as it is —
pandas is never imported here —, or a 2-D numpy array of objects, strings or
booleans) and learns, for every column that is not numeric, its categories:
the ``max_categories`` most frequent reference values get a code each
(0, 1, …), and any other value — unseen in the reference, or too rare to get
a bin — the code after them, its own bin. :meth:`Categories.encode` turns a
table into the (rows, features) float32 array the binner counts, numeric
columns unchanged; missing values (``None``, NaN) go to the missing bin.
:meth:`Categories.bin` gives each categorical feature one bin per code, so
that the window's shares of the categories are compared with the reference's.

Example:
    >>> import numpy as np
    >>> table = np.array([["low", 1.0], ["high", 2.0], ["low", 3.0]], dtype=object)
    >>> categories = Categories.fit(table)
    >>> categories.values, categories.encode(np.array([["high", 5.0], ["mid", 6.0]], dtype=object)).tolist()
    ({0: ('low', 'high')}, [[1.0, 5.0], [2.0, 6.0]])
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .binning import FeatureBinner

MAX_CATEGORIES = 18  # with the default 10 + 10 bins a feature: 18 categories, other/unseen, missing


def is_table(x) -> bool:
    """Whether ``x`` is a pandas DataFrame or a 2-D array with non-numeric columns."""
    if _is_dataframe(x):
        return True
    return isinstance(x, np.ndarray) and x.ndim == 2 and x.dtype.kind in "OUSb"


@dataclass(frozen=True)
class Categories:
    """The categorical columns of a reference table: column index -> its categories (codes in order)."""

    values: dict[int, tuple[str, ...]]
    n_columns: int
    names: tuple[str, ...] | None = None  # a DataFrame's column names, checked on every batch

    @classmethod
    def fit(cls, table, max_categories: int = MAX_CATEGORIES) -> Categories:
        names, columns = _columns(table)
        values = {}
        for i, column in enumerate(columns):
            if not _numeric(column):
                present = _as_strings(column)
                present = present[present != _MISSING]
                unique, counts = np.unique(present, return_counts=True)
                order = np.lexsort((unique, -counts))[:max_categories]  # most frequent first, ties by name
                values[i] = tuple(str(v) for v in unique[order])
        return cls(values, len(columns), names)

    def encode(self, table) -> np.ndarray:
        """The (rows, columns) float32 array of a table: codes for categorical columns, NaN for missing."""
        names, columns = _columns(table)
        if len(columns) != self.n_columns:
            raise ValueError(f"inputs must have {self.n_columns} columns, got {len(columns)}")
        if self.names is not None and names is not None and names != self.names:
            raise ValueError(f"inputs must have the reference's columns {list(self.names)}, got {list(names)}")
        out = np.empty((len(columns[0]) if columns else 0, self.n_columns), dtype=np.float32)
        for i, column in enumerate(columns):
            if i in self.values:
                out[:, i] = self._codes(i, column)
            elif _numeric(column):
                out[:, i] = np.asarray(column, dtype=np.float32)
            else:
                raise ValueError(f"input column {self._name(i)} was numeric in the reference, got {column.dtype}")
        return out

    def bin(self, binner: FeatureBinner) -> FeatureBinner:
        """``binner`` with one bin per category (and one for other/unseen values) for each categorical feature."""
        low, scale, lookup, n_bins = binner.low.copy(), binner.scale.copy(), binner.lookup.copy(), binner.n_bins.copy()
        for i, known in self.values.items():
            codes = len(known) + 1
            if codes > binner.n_columns - 1:
                raise ValueError(f"column {self._name(i)}: {len(known)} categories exceed {binner.n_columns} bins")
            low[i], scale[i] = -0.5, binner.grid / codes  # code c lands in cell (c + 0.5) * grid / codes
            lookup[i] = (np.arange(binner.grid) * codes) // binner.grid
            n_bins[i] = codes
        return FeatureBinner(low, scale, lookup, n_bins, binner.n_columns)

    def as_header(self) -> dict:
        return {
            "values": {str(i): list(v) for i, v in self.values.items()},
            "n_columns": self.n_columns,
            "names": None if self.names is None else list(self.names),
        }

    @classmethod
    def from_header(cls, header: dict) -> Categories:
        names = header.get("names")
        return cls(
            {int(i): tuple(str(x) for x in v) for i, v in header["values"].items()},
            int(header["n_columns"]),
            None if names is None else tuple(str(n) for n in names),
        )

    def _codes(self, i: int, column) -> np.ndarray:
        known = self.values[i]
        strings = _as_strings(column)
        unique, inverse = np.unique(strings, return_inverse=True)
        lookup = {value: code for code, value in enumerate(known)}
        unique_codes = np.array(
            [np.nan if u == _MISSING else lookup.get(str(u), len(known)) for u in unique], dtype=np.float32
        )
        return unique_codes[inverse.reshape(-1)]

    def _name(self, i: int) -> str:
        return repr(self.names[i]) if self.names is not None else str(i)


_MISSING = "\x00missing"


def _is_dataframe(x) -> bool:
    return type(x).__module__.split(".")[0] == "pandas" and hasattr(x, "columns") and hasattr(x, "iloc")


def _columns(table) -> tuple[tuple[str, ...] | None, list]:
    """A table's column names (a DataFrame's) and its columns as 1-D numpy arrays."""
    if _is_dataframe(table):
        columns = []
        for name in table.columns:
            column = table[name]
            if str(column.dtype) == "category":
                column = column.astype(object)
            columns.append(column.to_numpy())
        return tuple(str(n) for n in table.columns), columns
    array = np.asarray(table)
    if array.ndim != 2:
        raise ValueError(f"a table of inputs must be 2-D (rows, columns), got shape {array.shape}")
    return None, [array[:, i] for i in range(array.shape[1])]


def _numeric(column: np.ndarray) -> bool:
    if column.dtype.kind in "iuf":
        return True
    if column.dtype.kind != "O":
        return False
    return all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) for v in column)


def _as_strings(column: np.ndarray) -> np.ndarray:
    """Values as strings; ``None`` and float NaN as the missing marker."""
    out = np.empty(column.shape[0], dtype=object)
    for j, v in enumerate(column.tolist()):
        out[j] = _MISSING if v is None or (isinstance(v, float) and v != v) else str(v)
    return out.astype(str)
