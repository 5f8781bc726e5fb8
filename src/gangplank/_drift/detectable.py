"""The smallest shift a fitted reference catches in most windows, by signal, judged by its own decision rule.

Windows of the reference's ``window_size`` are drawn with replacement from
rows the caller gives (held-out rows of the reference's distribution, or the
reference rows themselves), a shift of size ``s`` is applied, and each window
is judged by :meth:`~gangplank.DriftReference.compare`, exactly as in
production. The smallest ``s`` at which a signal fires in at least ``power``
of the windows is found by doubling, then bisection (relative precision
``2 ** -BISECTIONS``). Every size reuses the same row draws, so the firing
rate grows with ``s`` (up to sampling noise) and the search converges. Shifts:

* ``input_shift_sd``: every feature (or a random ``features_share`` of them)
  moved by ``s`` of its standard deviation in the given rows; ``inf`` if not
  caught at ``MAX_SD``, NaN without numeric inputs. Features with no spread, and
  categorical columns, do not move.
* ``class_share_increase``: one class's share of the predictions raised by
  ``s`` (its rows drawn more often, the others' less), for each class.
* ``confidence_drop``: every row's probabilities mixed with the uniform,
  ``(1 - λ) p + λ / k``, which keeps the predicted class and lowers the mean
  confidence by ``s = λ (mean confidence - 1 / k)``.

On discrete features (counts, pixel intensities on a 1/255 grid) a mean
shift is a poor yardstick: a tiny one moves values across bin edges, and
the input signal catches it.

A shift of 0 means the signal fires in ``power`` of the windows of the
unshifted rows: they already differ from the reference (not its
distribution), or the reference is too small for its windows.

Cost: about ``windows`` × 10 comparisons per signal (per class for the
prediction signal), each binning one window: 1-2 s for 30 features, 3-6 s
for MNIST's 784 pixels (``python benchmarks/run.py detectable``).

Example:
    >>> import numpy as np
    >>> from gangplank import DriftReference
    >>> rng = np.random.default_rng(0)
    >>> x, p = rng.normal(size=(2000, 3)), rng.dirichlet([1, 1], 2000)
    >>> reference = DriftReference.fit(x, p, window_size=200, n_simulations=200, false_alarm_rate=1e-2)
    >>> 0.2 < reference.detectable_shift(x, p, windows=40)["input_shift_sd"] < 1.0
    True
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from .batch import Batch

if TYPE_CHECKING:
    from ..reference import DriftReference

MAX_SD = 16.0  # an input shift not caught at this many standard deviations is reported as inf
BISECTIONS = 6


def detectable_shift(
    reference: DriftReference, batch: Batch, *, features_share: float, power: float, windows: int, seed: int
) -> dict:
    """The smallest shift per signal (see the module docstring) for a validated ``batch`` of rows."""
    if not 0 < features_share <= 1 or not 0 < power < 1:
        raise ValueError(f"features_share must be in (0, 1] and power in (0, 1), got {features_share} and {power}")
    if windows < 1 or batch.rows < 2:
        raise ValueError(f"need at least 1 window and 2 rows, got {windows} and {batch.rows}")
    rng = np.random.default_rng(seed)
    uniforms = rng.random((int(windows), reference.window_size))
    draws = np.minimum((uniforms * batch.rows).astype(np.int64), batch.rows - 1)
    predicted = batch.probabilities.argmax(axis=1)
    confidence = batch.probabilities.max(axis=1)
    k = reference.n_classes
    result: dict[str, Any] = {
        "power": float(power),
        "windows": int(windows),
        "window_size": reference.window_size,
        "rows": batch.rows,
        "shifted_features": np.zeros(0, dtype=np.int64),
        "input_shift_sd": float("nan"),
        "class_shares": np.bincount(predicted, minlength=k) / batch.rows,
        "class_share_increase": np.full(k, np.nan),
        "mean_confidence": float(confidence.mean()),
        "confidence_drop": float("nan"),
    }
    categorical = () if reference.categories is None else tuple(reference.categories.values)
    numeric = np.setdiff1d(np.arange(reference.n_features), np.array(categorical, dtype=np.int64))
    inputs = batch.inputs
    if inputs is not None and numeric.size:
        columns = np.sort(rng.permutation(numeric)[: max(1, round(features_share * numeric.size))])
        spread = np.nanstd(inputs.astype(np.float64), axis=0)
        step = np.where(np.isfinite(spread), spread, 0.0)[columns].astype(np.float32)
        result["shifted_features"] = columns

        def input_batches(shift: float):
            for rows in draws:
                x = inputs[rows]
                x[:, columns] += shift * step
                yield Batch(batch.probabilities[rows], x)

        def input_rate(shift: float) -> float:
            return _rate(reference, input_batches(shift), "input")

        result["input_shift_sd"] = _smallest(input_rate, power, 1 / 16, MAX_SD)
    for c in range(k):
        share = float(result["class_shares"][c])
        if 0 < share < 1:

            def class_rate(increase: float, c: int = c, share: float = share) -> float:
                return _rate(reference, _reweighted(batch, predicted == c, share, increase, uniforms), "prediction")

            result["class_share_increase"][c] = _smallest(class_rate, power, 1 / 64, 1 - share)
    spread_to_uniform = result["mean_confidence"] - 1 / k
    if spread_to_uniform > 0:

        def softened(mix: float):
            for rows in draws:
                yield Batch((1 - mix) * batch.probabilities[rows] + mix / k)

        mix = _smallest(lambda m: _rate(reference, softened(m), "confidence"), power, 1 / 64, 1.0)
        result["confidence_drop"] = mix * spread_to_uniform
    return result


def _rate(reference: DriftReference, batches, signal: str) -> float:
    """Share of the windows (one per batch) in which ``signal`` fires."""
    fired = total = 0
    for batch in batches:
        window = reference.new_window()
        window.add(batch)
        fired += reference.compare(window).signals[signal]
        total += 1
    return fired / total


def _reweighted(batch: Batch, in_class: np.ndarray, share: float, increase: float, uniforms: np.ndarray):
    """Windows in which one class's rows make up ``share + increase`` of the draws (inverse CDF of ``uniforms``)."""
    weights = np.where(in_class, (share + increase) / share, (1 - share - increase) / (1 - share))
    cumulative = np.cumsum(weights)
    cumulative /= cumulative[-1]
    for u in uniforms:
        rows = np.minimum(np.searchsorted(cumulative, u, side="right"), batch.rows - 1)
        yield Batch(batch.probabilities[rows])


def _smallest(rate: Callable[[float], float], power: float, start: float, upper: float) -> float:
    """Smallest ``s`` in [0, upper] with ``rate(s) >= power``: doubling from ``start``, then bisection; inf if none."""
    if rate(0.0) >= power:
        return 0.0
    low, high = 0.0, min(start, upper)
    while rate(high) < power:
        if high >= upper:
            return float("inf")
        low, high = high, min(2 * high, upper)
    for _ in range(BISECTIONS):
        middle = (low + high) / 2
        if rate(middle) >= power:
            high = middle
        else:
            low = middle
    return high
