"""What the shipped alerts do on real MNIST models, judged by promtool on the exporter's own output.

Two MLPs (a primary and an independently trained shadow, tests/mnist_streams.py)
and four streams: correct, halved intensity (accuracy kept, confidence lower),
silently wrong (9 % of rows wrong at unchanged confidence) and inverted pixels.
Each window of 200 rows goes through a push-less DriftMonitor; after each, what
a scrape serves becomes one minute of promtool input, and promtool says which
alerts fire (tests/rule_replay.py). A page is an alert of severity critical.
"""

from __future__ import annotations

import pytest

from gangplank import DriftMonitor, DriftReference
from tests.rule_replay import alert_names, monitor_snapshots, replay, severities

pytestmark = pytest.mark.slow

WINDOW = 200
PRODUCTION = alert_names(groups=["gangplank-production"])
PAGES = [name for name in PRODUCTION if severities()[name] == "critical"]
WARNINGS = [name for name in PRODUCTION if severities()[name] == "warning"]


@pytest.fixture(scope="module")
def reference(mnist_streams):
    pool = mnist_streams.reference
    return DriftReference.fit(pool.inputs, pool.probabilities, pool.labels, shadow=pool.shadow, window_size=WINDOW)


def firing(reference, streams, stream, n_windows, label_share=0.0, shadow=False, seed=0, **monitor_args):
    """The alerts firing after each of ``n_windows`` windows of ``stream``."""
    monitor = DriftMonitor(None, "replay", reference=reference, agent=stream, window_size=WINDOW, **monitor_args)
    try:
        windows = streams.windows(stream, n_windows, WINDOW, label_share=label_share, seed=seed)
        snapshots = monitor_snapshots(monitor, windows, shadow=shadow)
    finally:
        monitor.close()
    return replay(snapshots, alerts=PRODUCTION)


def first_window(fired, alerts) -> int | None:
    """The 1-based window after which one of ``alerts`` first fired."""
    return next((i + 1 for i, names in enumerate(fired) if names & set(alerts)), None)


def onsets(fired, alerts) -> int:
    on = [bool(names & set(alerts)) for names in fired]
    return sum(1 for i, now in enumerate(on) if now and (i == 0 or not on[i - 1]))


@pytest.mark.parametrize("label_share", [1.0, 0.0])
def test_a_correct_model_never_pages_and_warns_at_most_once_in_240_windows(reference, mnist_streams, label_share):
    fired = firing(reference, mnist_streams, "clean", 240, label_share=label_share, shadow=True, seed=1)
    assert onsets(fired, PAGES) == 0, [f for f in fired if f]
    assert onsets(fired, WARNINGS) <= 1, [f for f in fired if f]


@pytest.mark.parametrize(
    "label_share, by_window, monitor_args",
    [
        (1.0, 4, {}),
        (0.5, 6, {}),
        # labels on a tenth of the rows: the charts are told so (20 labels a window), which keeps the same
        # false-page budget a month and lets them decide on fewer labels
        (0.1, 20, {"labels_per_window": 20}),
    ],
)
def test_a_silently_wrong_model_pages_on_labels_and_keeps_paging(
    reference, mnist_streams, label_share, by_window, monitor_args
):
    for seed in (2, 3, 4):
        fired = firing(
            reference, mnist_streams, "silently_wrong", by_window + 4, label_share, seed=seed, **monitor_args
        )
        first = first_window(fired, ["GangplankModelDegraded"])
        assert first is not None and first <= by_window, (seed, fired)
        assert all("GangplankModelDegraded" in names for names in fired[first - 1 :]), (seed, fired)  # no flapping


def test_a_silently_wrong_model_pages_without_labels_when_a_shadow_model_watches(reference, mnist_streams):
    for seed in (5, 6, 7):
        fired = firing(reference, mnist_streams, "silently_wrong", 8, shadow=True, seed=seed)
        first = first_window(fired, ["GangplankModelDegraded"])
        assert first is not None and first <= 5, (seed, fired)
    # without labels and without a shadow, one model's confidence cannot see it: no page
    assert first_window(firing(reference, mnist_streams, "silently_wrong", 8, seed=5), PAGES) is None


@pytest.mark.parametrize("label_share, shadow", [(1.0, False), (0.0, False), (0.0, True), (0.1, True)])
def test_halved_intensity_never_pages(reference, mnist_streams, label_share, shadow):
    fired = firing(reference, mnist_streams, "halved", 30, label_share=label_share, shadow=shadow, seed=8)
    assert first_window(fired, PAGES) is None, fired


def test_inverted_pixels_warn_without_labels_and_page_with_a_shadow_model(reference, mnist_streams):
    fired = firing(reference, mnist_streams, "inverted", 8, seed=9)
    assert first_window(fired, WARNINGS) <= 5, fired
    shadowed = firing(reference, mnist_streams, "inverted", 8, shadow=True, seed=9)
    assert first_window(shadowed, ["GangplankModelDegraded"]) <= 5, shadowed
