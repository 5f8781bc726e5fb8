"""The reference profile: bins, counts and shares of data the model was checked on.

A :class:`Profile` is learned once from reference rows (inputs, the model's
probabilities, optionally true labels) by filling one big
:class:`~gangplank._drift.window.Window` — the same ingestion path as production
traffic — and keeping its totals: per-feature bin counts, predicted-class
shares, a confidence histogram and, with labels, the accuracy and the
confidence → P(correct) map used for the label-free accuracy estimate.

The estimate is confidence-based performance estimation (the idea of
NannyML's CBPE) on a binned map: each confidence bin's reference accuracy,
made monotone in confidence by isotonic regression. A window's estimate is
its confidence histogram dotted with the map; it assumes the model's
confidence stays calibrated under the shift (no concept shift).

Example:
    >>> import numpy as np
    >>> from gangplank._drift.batch import Batch
    >>> rng = np.random.default_rng(0)
    >>> p = rng.dirichlet([1, 1], size=1000); y = (rng.random(1000) > p[:, 0]).astype(int)
    >>> profile = Profile.fit(Batch.of(None, p, y), confidence_bins=5)
    >>> round(profile.accuracy, 3) == round(float(np.mean(p.argmax(1) == y)), 3)
    True
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import isotonic_regression

from . import count_sums_kernel, psi_kernel
from . import drift_statistics as ds
from .batch import Batch
from .binning import DEFAULT_GRID, FeatureBinner
from .categories import Categories
from .regression import ErrorProfile
from .window import Window


@dataclass(frozen=True)
class Profile:
    """Totals of the reference rows; see the module docstring."""

    binner: FeatureBinner | None  # None: the reference had no inputs
    input_counts: np.ndarray  # (features, columns)
    class_shares: np.ndarray  # (classes,)
    confidence_edges: np.ndarray  # inner edges of the confidence histogram
    confidence_counts: np.ndarray  # (edges + 1,)
    accuracy: float  # NaN without labels
    confidence_accuracy: np.ndarray  # (edges + 1,) P(correct | confidence bin); NaN without labels
    n_samples: int
    confidence_labelled: np.ndarray | None = None  # (edges + 1,) labelled rows per bin (None: as counts)
    shadow_agreement: float = float("nan")  # share of rows where a shadow model predicted the same class
    shadow_rows: int = 0
    # A regression model's reference: the prediction bins' inner edges (its "classes") and its errors.
    prediction_edges: np.ndarray | None = None
    errors: ErrorProfile = field(default_factory=ErrorProfile.none)

    @classmethod
    def fit(
        cls,
        batch: Batch,
        width_bins: int = 10,
        quantile_bins: int = 10,
        confidence_bins: int = 10,
        grid: int = DEFAULT_GRID,
        categories: Categories | None = None,
        prediction_edges: np.ndarray | None = None,
    ) -> Profile:
        """Choose the bins from ``batch`` and count it (one bin per category for ``categories``' columns).

        ``prediction_edges``: ``batch`` is a regression model's, its predictions binned at these edges.
        """
        binner = None if batch.inputs is None else FeatureBinner.fit(batch.inputs, width_bins, quantile_bins, grid)
        if binner is not None and categories is not None:
            binner = categories.bin(binner)
        edges = _confidence_edges(batch.probabilities.max(axis=1), confidence_bins)
        profile = cls.of_window(cls.window(binner, edges, batch))
        if prediction_edges is None:
            return profile
        errors = batch.errors
        profile_errors = ErrorProfile.none() if errors is None else ErrorProfile.of(errors)
        return profile.replace(prediction_edges=prediction_edges, errors=profile_errors)

    @staticmethod
    def window(binner: FeatureBinner | None, confidence_edges: np.ndarray, batch: Batch) -> Window:
        window = Window(binner, confidence_edges, batch.probabilities.shape[1])
        window.add(batch)
        return window

    @classmethod
    def of_window(cls, window: Window) -> Profile:
        """A profile holding ``window``'s totals."""
        n, k = window.samples, window.n_classes
        return cls(
            binner=window.binner,
            input_counts=window.input_counts,
            class_shares=(window.class_counts + 0.5) / (n + 0.5 * k),
            confidence_edges=window.confidence_edges,
            confidence_counts=window.confidence_counts,
            accuracy=window.correct / window.labelled if window.labelled else float("nan"),
            confidence_accuracy=_confidence_accuracy(window),
            n_samples=n,
            confidence_labelled=window.confidence_labelled.copy(),
            shadow_agreement=window.shadow_agreement,
            shadow_rows=window.shadow_rows,
        )

    def of_rows(self, batch: Batch) -> Profile:
        """This profile's bins with the counts of other rows (for calibration)."""
        return Profile.of_window(self.window(self.binner, self.confidence_edges, batch))

    def new_window(self, input_stride: int = 1) -> Window:
        # Compile the comparison's kernels now as well (the window compiles its own): a worker process forked
        # after the monitor made its window inherits them instead of compiling them at its first closed window.
        psi_kernel.kernel()
        count_sums_kernel.kernel()
        return Window(self.binner, self.confidence_edges, self.n_classes, input_stride)

    @property
    def n_features(self) -> int:
        return 0 if self.binner is None else self.binner.n_features

    @property
    def n_classes(self) -> int:
        return self.class_shares.size

    @property
    def is_regression(self) -> bool:
        return self.prediction_edges is not None

    @property
    def has_labels(self) -> bool:
        return math.isfinite(self.accuracy)

    @property
    def has_shadow(self) -> bool:
        return self.shadow_rows > 0

    @property
    def labelled_rows(self) -> int:
        """Reference rows that had labels (what the accuracy was measured on)."""
        return int(self._labelled_per_bin.sum()) if self.has_labels else 0

    def estimated_accuracy(
        self, confidence_counts: np.ndarray, sums: tuple[int, float] | None = None
    ) -> tuple[float, float]:
        """The label-free accuracy estimate of a confidence histogram, and its standard error under no drift.

        Two errors add up: the window's rows drawn from the reference
        distribution (the spread of the map over reference rows, / n), and
        the map's own, each bin's accuracy measured on that bin's labelled
        reference rows (binomial, weighted by the window's share of the bin).
        ``sums``: the rows and the map's error, computed already (by
        :func:`~gangplank._drift.count_sums_kernel.count_sums`).
        """
        n = int(confidence_counts.sum()) if sums is None else sums[0]
        if not n or not self.has_labels:
            return float("nan"), float("nan")
        estimate = float(confidence_counts @ self.confidence_accuracy) / n
        if sums is None:
            weights = confidence_counts / n
            one_minus_a, labelled = self.map_error_terms
            map_error = float(np.sum(weights**2 * self.confidence_accuracy * one_minus_a / labelled))
        else:
            map_error = sums[1]
        return estimate, math.sqrt(self._map_variance / n + map_error)

    def shadow_estimated_accuracy(self, agreement: float) -> float:
        """Accuracy estimated from a window's agreement with the shadow model (agreement on the line:
        the reference accuracy minus the drop in agreement). NaN without labels or a shadow."""
        return self.accuracy - (self.shadow_agreement - agreement) if self.has_shadow else float("nan")

    @property
    def _labelled_per_bin(self) -> np.ndarray:
        return self.confidence_counts if self.confidence_labelled is None else self.confidence_labelled

    @functools.cached_property
    def valid_columns(self) -> np.ndarray:
        return self.binner.valid_columns() if self.binner is not None else np.ones((0, 1), dtype=bool)

    @functools.cached_property
    def input_layout(self) -> ds.CellLayout:
        return ds.CellLayout.of(self.valid_columns)

    @functools.cached_property
    def confidence_layout(self) -> ds.CellLayout:
        return ds.CellLayout.full((1, self.confidence_counts.size))

    @functools.cached_property
    def input_shares(self) -> ds.Shares:
        return self.input_layout.shares(self.input_counts)

    @functools.cached_property
    def input_psi(self) -> ds.PsiAgainst:
        """Each feature's PSI of a window's input cells against :attr:`input_shares` (empty cells precomputed)."""
        return ds.PsiAgainst.of(self.input_shares)

    @functools.cached_property
    def confidence_shares(self) -> ds.Shares:
        return self.confidence_layout.shares(self.confidence_counts)

    @functools.cached_property
    def confidence_psi(self) -> ds.PsiAgainst:
        """The PSI of a window's confidence histogram (its counts are its cells) against :attr:`confidence_shares`."""
        return ds.PsiAgainst.of(self.confidence_shares)

    @functools.cached_property
    def map_error_terms(self) -> tuple[np.ndarray, np.ndarray]:
        """``1 − accuracy`` and the labelled rows (at least 1) of each confidence bin: the map's own error."""
        return 1 - self.confidence_accuracy, np.maximum(self._labelled_per_bin, 1)

    @functools.cached_property
    def _map_variance(self) -> float:
        shares = self.confidence_counts / max(self.confidence_counts.sum(), 1)
        mean = shares @ self.confidence_accuracy
        return float(shares @ (self.confidence_accuracy - mean) ** 2)

    def replace(self, **changes) -> Profile:
        return dataclasses.replace(self, **changes)


def _confidence_edges(confidence: np.ndarray, bins: int) -> np.ndarray:
    """Inner edges mixing reference quantiles (where the mass is) and equal widths over [0, 1]."""
    quantiles = np.quantile(confidence, np.arange(1, bins) / bins)
    widths = np.arange(1, bins) / bins
    return np.unique(np.concatenate([quantiles, widths]))


def _confidence_accuracy(window: Window) -> np.ndarray:
    """Each confidence bin's reference accuracy, monotone in confidence (isotonic regression).

    A bin without labelled rows takes its midpoint confidence (a calibrated
    model's accuracy there), with almost no weight.
    """
    if not window.labelled:
        return np.full(window.confidence_counts.size, np.nan)
    correct = window.confidence_correct.astype(np.float64)
    counts = window.confidence_labelled.astype(np.float64)
    bounds = np.concatenate([[0.0], window.confidence_edges, [1.0]])
    midpoints = (bounds[:-1] + bounds[1:]) / 2
    observed = np.divide(correct, counts, out=midpoints.copy(), where=counts > 0)
    return isotonic_regression(observed, weights=np.where(counts > 0, counts, 1e-6)).x
