"""The MNIST scenarios of issue 16 (tests/mnist_streams.py) are what they claim to be, on real MNIST."""

from __future__ import annotations

import numpy as np
import pytest

from tests.mnist_streams import (
    SILENT_SHARE,
    STREAMS,
    agreement_estimate,
)

pytestmark = pytest.mark.slow  # trains two small MLPs (a few seconds on two cores)


def test_silently_wrong_keeps_every_confidence_and_is_wrong_on_its_rows(mnist_streams):
    clean, wrong = mnist_streams.streams["clean"], mnist_streams.streams["silently_wrong"]
    changed = np.nonzero((wrong.probabilities != clean.probabilities).any(axis=1))[0]
    assert changed.tolist() == mnist_streams.silent_rows.tolist()
    assert changed.size == round(SILENT_SHARE * clean.labels.size)
    np.testing.assert_array_equal(wrong.probabilities.max(axis=1), clean.probabilities.max(axis=1))
    np.testing.assert_array_equal(np.sort(wrong.probabilities, axis=1), np.sort(clean.probabilities, axis=1))
    assert (wrong.probabilities[changed].argmax(axis=1) != wrong.labels[changed]).all()
    np.testing.assert_array_equal(wrong.shadow, clean.shadow)
    was_right = clean.probabilities[changed].argmax(axis=1) == clean.labels[changed]
    assert wrong.accuracy() == pytest.approx(clean.accuracy() - was_right.sum() / clean.labels.size)


def test_halved_keeps_accuracy_and_lowers_confidence_inverted_loses_it(mnist_streams):
    clean, halved, inverted = (mnist_streams.streams[s] for s in ("clean", "halved", "inverted"))
    assert clean.accuracy() > 0.9 and mnist_streams.reference.accuracy() > 0.9
    assert abs(halved.accuracy() - clean.accuracy()) < 0.01
    assert halved.probabilities.max(axis=1).mean() < clean.probabilities.max(axis=1).mean() - 0.01
    assert inverted.accuracy() < 0.3


def test_agreement_tells_the_silently_wrong_model_from_the_halved_images(mnist_streams):
    ref = mnist_streams.reference
    for name in ("clean", "halved", "silently_wrong"):
        pool = mnist_streams.streams[name]
        assert agreement_estimate(pool, ref) == pytest.approx(pool.accuracy(), abs=0.02), name
    assert agreement_estimate(mnist_streams.streams["inverted"], ref) < 0.6


@pytest.mark.parametrize("share, labelled", [(1.0, 200), (0.5, 100), (0.1, 20), (0.0, 0)])
def test_windows_label_the_share_asked(mnist_streams, share, labelled):
    got = list(mnist_streams.windows("clean", 3, label_share=share, seed=5))
    assert len(got) == 3 and sorted(STREAMS) == sorted(mnist_streams.streams)
    for w in got:
        assert w["probabilities"].shape == (200, 10) and w["inputs"].shape == (200, 784)
        assert int(w["labelled"].sum()) == labelled
        assert (w["labels"] is None) == (labelled == 0)
        pool = mnist_streams.streams["clean"]
        np.testing.assert_array_equal(w["true_labels"], pool.labels[w["index"]])
    assert len({i for w in got for i in w["ids"]}) == 600
    same_rows = next(mnist_streams.windows("clean", 1, label_share=0.3, seed=5))["index"]
    np.testing.assert_array_equal(same_rows, got[0]["index"])  # the same rows at every label share
