"""DriftReference: the training-data profile a production window is compared with.

``DriftReference.fit(inputs, probabilities, labels)`` profiles the reference
rows (:mod:`gangplank._drift.profile`), calibrates the thresholds by simulation
(:mod:`gangplank._drift.calibration`) and keeps the settings it used
(:meth:`get_params`). :meth:`compare` applies them to a window
(:mod:`gangplank._drift.comparison`). :meth:`save` and :meth:`load` use the
documented, pickle-free format of :mod:`gangplank._drift.reference_file`. Every
threshold can be overridden with :meth:`with_thresholds`.

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(2000, 5)); p = rng.dirichlet([1, 1, 1], size=2000)
    >>> reference = DriftReference.fit(x, p, window_size=100, n_simulations=100)
    >>> reference.compare(reference.window_of(x[:100], p[:100])).drift_detected
    False
    >>> reference.get_params()["n_simulations"]
    100
"""

from __future__ import annotations

import dataclasses
import logging
import textwrap
from dataclasses import dataclass

from ._drift import detectable, reference_file, sensitivity
from ._drift.batch import Batch
from ._drift.binning import DEFAULT_GRID
from ._drift.calibration import FitSettings, calibrate
from ._drift.categories import Categories, is_table
from ._drift.comparison import SIGNALS, Thresholds, WindowReport, compare
from ._drift.profile import Profile
from ._drift.regression import ErrorProfile, as_values, check_task, prediction_edges
from ._drift.validation import is_single_output
from ._drift.window import Window
from .reduction import InputReduction

logger = logging.getLogger("gangplank")

__all__ = ["SIGNALS", "DriftReference", "FitSettings", "Thresholds", "WindowReport"]


@dataclass(frozen=True)
class DriftReference:
    """A fitted reference profile; build it with :meth:`fit` or :meth:`load`."""

    profile: Profile
    thresholds: Thresholds
    window_size: int
    settings: FitSettings | None = None  # None for a file written before settings were saved
    categories: Categories | None = None  # categorical input columns (a table with strings, booleans, categories)
    reduction: InputReduction | None = None  # what turns raw inputs into the monitored features

    @classmethod
    def fit(
        cls,
        inputs,
        probabilities,
        labels=None,
        *,
        shadow=None,
        window_size: int = 200,
        false_alarm_rate: float = 1e-4,
        feature_alpha: float = 0.01,
        min_feature_psi: float = 0.05,
        n_simulations: int = 1000,
        width_bins: int = 10,
        quantile_bins: int = 10,
        confidence_bins: int = 10,
        grid: int = DEFAULT_GRID,
        seed: int = 0,
        accuracy_tolerance: float = 0.02,
        input_stride: int = 1,
        threshold: float | None = None,
        task: str = "classification",
        reduction: InputReduction | None = None,
    ) -> DriftReference:
        """Profile the reference data and calibrate thresholds for windows of ``window_size``.

        ``inputs`` are (rows, features) or images (flattened per row), a
        dict or list of inputs (side by side), or a table — a pandas
        DataFrame as it is, or a 2-D array of objects — whose string,
        boolean and categorical columns become categories (one bin each for
        the most frequent ``width_bins + quantile_bins - 2``, 18, one for other and unseen values, compared by
        their shares; see :mod:`gangplank._drift.categories`);
        ``probabilities`` the model's (rows, classes) output on them (softmax
        or logits), or a binary classifier's single output, (rows, 1) or
        (rows,): P(class 1) from a sigmoid (or its logit), class 1 from
        ``threshold`` (0.5) up; ``labels``
        the true classes, optional (they enable the accuracy charts and the
        label-free estimate); ``shadow`` a second, independently trained
        model's output on the same rows (probabilities or classes), optional:
        its agreement with the model is the reference for the shadow chart
        and the agreement-based estimate. Fit on data neither model trained
        on (e.g. the validation split), so that confidence, accuracy and
        agreement reflect unseen data.

        With ``task="regression"`` ``probabilities`` are a regression model's
        predictions, (rows,) or (rows, 1), and ``labels`` its continuous
        targets, optional: the ``prediction`` signal tests the predictions'
        distribution over ``quantile_bins`` bins at the reference's quantiles,
        and targets give MAE, RMSE and the sequential error charts
        (:mod:`gangplank._drift.regression`). ``shadow`` and ``threshold`` are
        for classifiers.

        ``reduction``, optional, monitors a few features computed from wide
        raw inputs instead of every raw value: ``gangplank.pool_images((8,
        8))``, ``gangplank.feature_subset(indices)`` or
        ``gangplank.random_projection(64)`` (see :mod:`gangplank.reduction`).
        It is saved with the reference and applied to every batch the
        monitor observes, so raw inputs go in everywhere.

        The other keyword arguments are saved with the reference
        (:meth:`get_params`):

        {settings}
        """
        if inputs is None:
            raise ValueError("inputs are required to fit a reference")
        edges = None
        if check_task(task) == "regression":
            if shadow is not None or threshold is not None:
                raise ValueError("shadow and threshold are for classifiers, not for task='regression'")
            edges = prediction_edges(as_values(probabilities, "predictions"), quantile_bins)
        elif is_single_output(probabilities):
            threshold = 0.5 if threshold is None else float(threshold)
        elif threshold is not None:
            raise ValueError("threshold is for a binary classifier's single output, (rows,) or (rows, 1)")
        if reduction is not None:
            if not isinstance(reduction, InputReduction):
                raise TypeError(
                    f"reduction must be made by gangplank.pool_images, feature_subset or "
                    f"random_projection, got {type(reduction).__name__}"
                )
            if is_table(inputs):
                raise ValueError("a reduction takes numeric inputs, not a table with categorical columns")
            reduction = reduction.fitted(inputs)
            inputs = reduction.apply(inputs)
        categories = Categories.fit(inputs, width_bins + quantile_bins - 2) if is_table(inputs) else None
        if categories is not None:
            inputs = categories.encode(inputs)
        if edges is not None:
            batch = Batch.of_regression(inputs, probabilities, labels, edges=edges)
        else:
            batch = Batch.of(inputs, probabilities, labels, shadow=shadow, threshold=threshold)
        settings = FitSettings(
            window_size=int(window_size),
            false_alarm_rate=false_alarm_rate,
            feature_alpha=feature_alpha,
            min_feature_psi=min_feature_psi,
            n_simulations=n_simulations,
            width_bins=width_bins,
            quantile_bins=quantile_bins,
            confidence_bins=confidence_bins,
            grid=grid,
            seed=seed,
            input_stride=input_stride,
            accuracy_tolerance=float(accuracy_tolerance),
            threshold=threshold,
            task=task,
        )
        settings.check(batch.rows)
        profile = Profile.fit(batch, width_bins, quantile_bins, confidence_bins, grid, categories, edges)
        thresholds = calibrate(profile, batch, settings)
        reference = cls(profile, thresholds, settings.window_size, settings, categories, reduction)
        limits = reference.sensitivity()
        logger.info("gangplank: DriftReference.fit: %s", sensitivity.summary(limits))
        for sentence in sensitivity.warnings(limits):
            logger.warning("gangplank: DriftReference.fit: %s", sentence)
        return reference

    def get_params(self) -> dict:
        """Every keyword the reference was fitted with, ``accuracy_tolerance`` included (empty for a
        version-1 file): ``DriftReference.fit(x, p, **reference.get_params())`` fits it again."""
        return {} if self.settings is None else {**self.settings.as_dict(), "reduction": self.reduction}

    def with_thresholds(self, **overrides) -> DriftReference:
        """A copy with some thresholds replaced, e.g. ``with_thresholds(class_p_value=1e-4)``."""
        thresholds = self.thresholds.replace(**overrides)
        return dataclasses.replace(self, thresholds=thresholds)

    # -- windows --------------------------------------------------------------
    def prepare(
        self,
        inputs,
        probabilities,
        labels=None,
        ids=None,
        normalise: bool = True,
        shadow=None,
        *,
        reduced: bool = False,
    ) -> Batch:
        """Validate a batch for this reference (``ValueError`` if it does not fit); raw ``inputs`` go through
        the reference's :attr:`reduction` unless ``reduced`` says :meth:`reduce` already did it."""
        if not reduced:
            inputs = self.reduce(inputs)
        if self.categories is not None and inputs is not None:
            inputs = self.categories.encode(inputs)
        if self.is_regression:
            if shadow is not None:
                raise ValueError("a regression reference takes no shadow model")
            edges = self.profile.prediction_edges
            return Batch.of_regression(inputs, probabilities, labels, ids, edges=edges, n_features=self.n_features)
        return Batch.of(
            inputs,
            probabilities,
            labels,
            ids,
            shadow=shadow,
            n_features=self.n_features,
            n_classes=self.n_classes,
            normalise=normalise,
            threshold=self.threshold,
        )

    def reduce(self, inputs):
        """Raw ``inputs`` as the monitored features: the :attr:`reduction`'s output, or the inputs as they are."""
        return inputs if self.reduction is None or inputs is None else self.reduction.apply(inputs)

    @property
    def is_regression(self) -> bool:
        """Whether the reference is a regression model's (``task="regression"``)."""
        return self.profile.is_regression

    @property
    def reference_errors(self) -> ErrorProfile:
        """A regression reference's MAE, RMSE and the error charts' cut (NaN without targets)."""
        return self.profile.errors

    @property
    def threshold(self) -> float | None:
        """A binary classifier's decision threshold on its single output (``None``: a column per class)."""
        return None if self.settings is None else self.settings.threshold

    @property
    def input_stride(self) -> int:
        return 1 if self.settings is None else self.settings.input_stride

    def new_window(self) -> Window:
        return self.profile.new_window(self.input_stride)

    def window_of(self, inputs, probabilities, labels=None, shadow=None) -> Window:
        """A window holding these rows (checked like ``observe`` checks them)."""
        window = self.new_window()
        window.add(self.prepare(inputs, probabilities, labels, shadow=shadow))
        return window

    def compare(self, window: Window) -> WindowReport:
        """Every statistic of ``window`` against this reference, and the drift decision."""
        rows = -(-self.window_size // self.input_stride)
        return compare(self.profile, self.thresholds, window, self.window_size, rows)

    def sensitivity(self) -> dict:
        """What this reference can detect: the per-feature PSI cut (median, min, max), the share of
        features that must pass it, the confidence PSI cut, the class p-value, rows and window size.
        ``fit`` logs a warning when the reference is too small for its window or its cuts let only
        gross shifts count (see :mod:`gangplank._drift.sensitivity`)."""
        limits = self.thresholds.min_window_samples
        return sensitivity.sensitivity(self.thresholds, self.n_samples, self.window_size, limits)

    def detectable_shift(
        self,
        inputs,
        probabilities,
        *,
        features_share: float = 1.0,
        power: float = 0.5,
        windows: int = 100,
        seed: int = 0,
    ) -> dict:
        """The smallest shift each signal catches in at least ``power`` of its windows, simulated on these rows.

        Give held-out rows of the reference's distribution (or the reference
        rows). Returns ``input_shift_sd`` (a mean shift of ``features_share``
        of the features, in their standard deviations), ``class_share_increase``
        (per class), ``confidence_drop`` (of the mean confidence), each ``inf``
        when no shift is caught, with the ``class_shares``, ``mean_confidence``
        and ``shifted_features`` (indices) they refer to. It judges windows with
        :meth:`compare`, so it is exact for the thresholds in use; it costs
        about ``windows`` x 10 comparisons per signal (see
        :mod:`gangplank._drift.detectable`).
        """
        batch = self.prepare(inputs, probabilities)
        return detectable.detectable_shift(
            self, batch, features_share=features_share, power=power, windows=windows, seed=seed
        )

    # -- what it knows -------------------------------------------------------
    @property
    def n_features(self) -> int:
        return self.profile.n_features

    @property
    def n_classes(self) -> int:
        return self.profile.n_classes

    @property
    def n_samples(self) -> int:
        return self.profile.n_samples

    @property
    def accuracy(self) -> float:
        return self.profile.accuracy

    @property
    def shadow_agreement(self) -> float:
        """Share of reference rows on which the shadow model agreed with the model (NaN without one)."""
        return self.profile.shadow_agreement

    @property
    def binner(self):
        return self.profile.binner

    # -- files ----------------------------------------------------------------
    def save(self, path) -> None:
        """Write the reference to ``path`` (see :mod:`gangplank._drift.reference_file`; no pickle)."""
        reference_file.write(path, self)

    @classmethod
    def load(cls, path) -> DriftReference:
        """Read a reference written by :meth:`save`; :class:`ReferenceFormatError` if it is not one."""
        return reference_file.read_reference(path, cls)


def _document_fit() -> None:
    """Write :class:`FitSettings`'s field docs into ``DriftReference.fit``'s docstring: one source for both."""
    fields = textwrap.indent(textwrap.dedent(FitSettings.field_docs()), " " * 8).strip()
    function = DriftReference.fit.__func__  # type: ignore[attr-defined]
    if function.__doc__:  # None under python -OO
        function.__doc__ = function.__doc__.replace("{settings}", fields)


_document_fit()
