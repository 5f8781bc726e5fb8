"""Windows of rows through a real, push-less ``DriftMonitor``: what each closed window said.

Shared by the estimate and detection benchmarks. ``window_rows(rng, pool, n, w)``
draws row indices (with replacement) for ``n`` windows of ``w`` rows;
``monitor_windows`` feeds them to ``DriftMonitor(pgw_addr=None, ...)`` and
records, per closed window, the report's estimate and signals and the
exporter's own k-of-m counts (``drift_signal_recent``) and pooled feedback.

Example:
    >>> import numpy as np
    >>> window_rows(np.random.default_rng(0), 10, 3, 4).shape
    (3, 4)
"""

from __future__ import annotations

import numpy as np

FLUSH_EVERY = 10  # windows observed between two flushes


def window_rows(rng, pool: int, n_windows: int, window: int) -> np.ndarray:
    """Row indices into a pool of ``pool`` rows, drawn with replacement: (n_windows, window)."""
    return rng.integers(0, pool, size=(n_windows, window))


def monitor_windows(reference, x, p, rows: np.ndarray, labels=None, agent: str = "bench", **monitor_args) -> list[dict]:
    """Feed each row of ``rows`` (one window of indices) to a fresh monitor; one dict per closed window.

    Each dict: ``estimate`` (the report's estimated accuracy), ``accuracy``
    (the report's realised accuracy, NaN without ``labels``), ``signals``
    (the window's own), ``recent`` (per signal, in how many of the last
    ``recent_windows`` windows it fired, read from the exporter when the
    window closed) and ``pooled`` (the exporter's pooled feedback: labels, accuracy).
    """
    from gangplank import DriftMonitor

    records: list[dict] = []
    monitor = None

    def closed(report):
        records.append(
            {
                "estimate": report.estimated_accuracy,
                "accuracy": report.accuracy,
                "signals": dict(report.signals),
                "recent": monitor.recent.signal_counts(),
                "pooled": monitor.recent.pooled_feedback(),
            }
        )

    # Room for every window between two flushes, and a long wait for it: a benchmark never drops a sample.
    monitor_args = {"max_pending_samples": (FLUSH_EVERY + 1) * rows.shape[1], "max_wait_seconds": 30.0, **monitor_args}
    monitor = DriftMonitor(
        None, "bench", reference=reference, agent=agent, window_size=rows.shape[1], on_window=closed, **monitor_args
    )
    try:
        for i, window in enumerate(rows):
            monitor.observe(x[window], p[window], None if labels is None else labels[window])
            if (i + 1) % FLUSH_EVERY == 0:
                monitor.flush(timeout=60)
        monitor.flush(timeout=60)
    finally:
        monitor.close()
    dropped = monitor.dropped
    if len(records) != rows.shape[0] or dropped:
        raise RuntimeError(f"{len(records)} windows closed of {rows.shape[0]}, {dropped} samples dropped")
    return records
