"""The drift reference file: a versioned ``.npz`` that loads without pickle.

Layout: ``np.savez_compressed`` of plain numeric arrays plus ``header``, the
UTF-8 bytes of a JSON object with ``format: "gangplank-drift-reference"``,
``version: 3``, the window size the thresholds were calibrated for, the
reference accuracy, the bin layout, the thresholds and the fit ``settings``
(``DriftReference.get_params()``). Version-1 files (no settings, no
accuracy map) still load. Arrays:

=====================  ===================  ==========================================
name                   shape                meaning
=====================  ===================  ==========================================
``low``, ``scale``     (features,)          each feature's grid: cell = (x − low)·scale
``lookup``             (features, cells)    uint8 bin of every grid cell
``input_counts``       (features, columns)  reference bin counts, missing bin last
``feature_psi``        (features,)          per-feature PSI cut
``class_shares``       (classes,)           predicted-class shares
``confidence_edges``   (edges,)             inner edges of the confidence histogram
``confidence_counts``  (edges + 1,)         its reference counts
``confidence_accuracy``  (edges + 1,)       P(correct) per confidence bin (version 2)
``confidence_labelled``  (edges + 1,)       labelled reference rows per bin (version 3)
=====================  ===================  ==========================================

Version 3 adds ``confidence_labelled`` and, in the header, the shadow
model's agreement and its row count; version-1 and -2 files still load (the
labelled rows per bin taken as the bin counts, no shadow). A reference
fitted with an input ``reduction`` is written as version 4: its header adds
``reduction``, the reduction's parameters (:meth:`~gangplank.reduction.InputReduction.as_header`),
so that a gangplank that cannot apply it refuses the file; without one the
file stays version 3.

Version 4 is also a regression model's reference (``task="regression"``): the
array ``prediction_edges`` (bins − 1,), the inner edges of its prediction
bins (``class_shares`` are those bins' shares), and in the header
``"task": "regression"`` and ``errors`` (the reference's MAE, RMSE, the
error charts' cut and the share of rows within it, ``null`` without
targets). A classifier's reference is still written as version 3, which
older gangplank versions read; they refuse a version-4 file rather than
take a regression model for a classifier.

:func:`read` opens it with ``allow_pickle=False``, refuses archives that claim
more than 1 GiB unpacked, and checks every shape and type, so a truncated,
tampered, pickled or other-version file raises :class:`ReferenceFormatError`
rather than running code or failing later.

Example:
    >>> header, arrays = read("mnist.drift.npz")  # doctest: +SKIP
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np

from ..errors import ReferenceFormatError

FORMAT = "gangplank-drift-reference"
VERSION = 3
EXTENDED_VERSION = 4  # a regression model's reference, or one with an input reduction
READABLE_VERSIONS = (1, 2, 3, 4)
MAX_UNPACKED_BYTES = 1 << 30


def write(path, reference) -> None:
    """Write a :class:`~gangplank.DriftReference` to ``path``."""
    profile, t = reference.profile, reference.thresholds
    header = {
        "window_size": reference.window_size,
        "n_samples": profile.n_samples,
        "accuracy": profile.accuracy if profile.has_labels else None,
        "n_columns": profile.binner.n_columns,
        "shadow_agreement": profile.shadow_agreement if profile.has_shadow else None,
        "shadow_rows": profile.shadow_rows,
        "thresholds": {
            "drifted_features_ratio": t.drifted_features_ratio,
            "confidence_psi": t.confidence_psi,
            "class_p_value": t.class_p_value,
            "estimated_accuracy_p_value": t.estimated_accuracy_p_value,
            "accuracy_tolerance": t.accuracy_tolerance,
            "quality_floor": t.quality_floor,
            "min_window_samples": t.min_window_samples,
        },
        "settings": None if reference.settings is None else reference.settings.as_dict(),
        "categories": None if reference.categories is None else reference.categories.as_header(),
    }
    regression = {}
    if profile.is_regression:
        header.update(version=EXTENDED_VERSION, task="regression")
        header["errors"] = profile.errors.as_header() if profile.errors.rows else None
        regression["prediction_edges"] = profile.prediction_edges
    if reference.reduction is not None:
        header.update(version=EXTENDED_VERSION, reduction=reference.reduction.as_header())
    write_arrays(
        path,
        header,
        {
            **regression,
            "low": profile.binner.low,
            "scale": profile.binner.scale,
            "lookup": profile.binner.lookup,
            "input_counts": profile.input_counts,
            "class_shares": profile.class_shares,
            "confidence_edges": profile.confidence_edges,
            "confidence_counts": profile.confidence_counts,
            "confidence_accuracy": profile.confidence_accuracy,
            "confidence_labelled": profile._labelled_per_bin,
            "feature_psi": t.feature_psi,
        },
    )


def read_reference(path, cls):
    """Read a reference file into ``cls`` (:class:`~gangplank.DriftReference`)."""
    from ..reduction import from_header as reduction_from_header
    from .binning import FeatureBinner
    from .calibration import FitSettings
    from .categories import Categories
    from .comparison import Thresholds
    from .profile import Profile
    from .regression import ErrorProfile

    header, arrays = read(path)
    lookup, n_columns = arrays["lookup"], int(header["n_columns"])
    binner = FeatureBinner(
        arrays["low"].astype(np.float32),
        arrays["scale"].astype(np.float32),
        lookup,
        lookup[:, -1].astype(np.int64) + 1,
        n_columns,
    )
    t = header["thresholds"]
    accuracy = header.get("accuracy")
    edges = arrays["confidence_edges"].astype(np.float64)
    confidence_accuracy = arrays.get("confidence_accuracy", np.full(edges.size + 1, np.nan)).astype(np.float64)
    profile = Profile(
        binner=binner,
        input_counts=arrays["input_counts"].astype(np.int64),
        class_shares=arrays["class_shares"].astype(np.float64),
        confidence_edges=edges,
        confidence_counts=arrays["confidence_counts"].astype(np.int64),
        accuracy=float("nan") if accuracy is None else float(accuracy),
        confidence_accuracy=confidence_accuracy,
        n_samples=int(header["n_samples"]),
        confidence_labelled=arrays["confidence_labelled"].astype(np.int64) if "confidence_labelled" in arrays else None,
        shadow_agreement=float("nan") if header.get("shadow_agreement") is None else float(header["shadow_agreement"]),
        shadow_rows=int(header.get("shadow_rows", 0)),
    )
    if header.get("task") == "regression":
        edges = arrays["prediction_edges"].astype(np.float64)
        profile = profile.replace(prediction_edges=edges, errors=ErrorProfile.from_header(header.get("errors")))
    thresholds = Thresholds(
        feature_psi=arrays["feature_psi"].astype(np.float64),
        drifted_features_ratio=float(t["drifted_features_ratio"]),
        confidence_psi=float(t["confidence_psi"]),
        class_p_value=float(t["class_p_value"]),
        estimated_accuracy_p_value=float(t.get("estimated_accuracy_p_value", t.get("accuracy_p_value"))),
        accuracy_tolerance=float(t.get("accuracy_tolerance", 0.0)),  # version 1 tested against the reference itself
        quality_floor=float(t.get("quality_floor", 0.80)),
        min_window_samples=int(t["min_window_samples"]),
    )
    # A file written before accuracy_tolerance was a fit setting: the thresholds held it.
    fitted = {"accuracy_tolerance": thresholds.accuracy_tolerance, **(header.get("settings") or {})}
    settings = FitSettings(**fitted) if header.get("settings") else None
    categories = Categories.from_header(header["categories"]) if header.get("categories") else None
    try:
        reduction = reduction_from_header(header["reduction"]) if header.get("reduction") else None
    except (KeyError, TypeError, ValueError) as exc:
        raise ReferenceFormatError(f"{path} holds an input reduction this gangplank cannot apply: {exc}") from None
    if reduction is not None and reduction.n_features_out != binner.n_features:
        raise ReferenceFormatError(
            f"{path}: its reduction makes {reduction.n_features_out} features, its bins are for {binner.n_features}"
        )
    return cls(profile, thresholds, int(header["window_size"]), settings, categories, reduction)


def write_arrays(path, header: dict, arrays: dict) -> None:
    """Write ``arrays`` and ``header`` (plus format and version) to ``path``."""
    header = {"format": FORMAT, "version": VERSION, **header}  # a header may name a later version
    encoded = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    with open(path, "wb") as handle:
        np.savez_compressed(handle, header=encoded, **arrays)


def read(path) -> tuple[dict, dict]:
    """The checked ``(header, arrays)`` of a reference file."""
    data = Path(path).read_bytes()  # FileNotFoundError etc. pass through unchanged
    try:
        _refuse_oversized(data)
        loaded = np.load(io.BytesIO(data), allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise ValueError(f"expected an .npz archive, found a single {type(loaded).__name__}")
        with loaded as archive:
            arrays = {name: archive[name] for name in archive.files}
        header = json.loads(arrays.pop("header").tobytes().decode())
    except Exception as exc:  # noqa: BLE001 - whatever damaged bytes make numpy/zipfile/zlib raise
        raise ReferenceFormatError(
            f"{path} is not a readable gangplank drift reference: {type(exc).__name__}: {exc}"
        ) from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        got = header.get("format") if isinstance(header, dict) else type(header).__name__
        raise ReferenceFormatError(f"{path} is not a gangplank drift reference (format {got!r}, expected {FORMAT!r})")
    if header.get("version") not in READABLE_VERSIONS:
        raise ReferenceFormatError(
            f"{path} has reference format version {header.get('version')!r}; this gangplank reads versions "
            f"{', '.join(map(str, READABLE_VERSIONS[:-1]))} and {READABLE_VERSIONS[-1]}"
        )
    try:
        _check(header, arrays)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
        raise ReferenceFormatError(f"{path} is a damaged gangplank drift reference: {exc}") from None
    return header, arrays


def _check(header: dict, arrays: dict) -> None:
    from .regression import ErrorProfile, check_task

    for name in ("low", "scale", "class_shares", "confidence_edges", "confidence_counts", "feature_psi"):
        if arrays[name].ndim != 1:
            raise ValueError(f"{name} must be 1-D, got shape {arrays[name].shape}")
    for name, array in arrays.items():
        if array.dtype.kind not in "biuf":
            raise ValueError(f"{name} must be numeric, got dtype {array.dtype}")
    low, scale, lookup = arrays["low"], arrays["scale"], arrays["lookup"]
    d, n_columns = low.shape[0], int(header["n_columns"])
    if not 2 <= n_columns <= 256:
        raise ValueError(f"n_columns must be between 2 and 256, got {n_columns}")
    if lookup.ndim != 2 or lookup.shape[1] < 1:
        raise ValueError(f"lookup must be 2-D (features, grid cells), got shape {lookup.shape}")
    input_counts = arrays["input_counts"]
    expected = {
        "scale": (scale.shape, (d,)),
        "lookup": (lookup.shape[:1], (d,)),
        "input_counts": (input_counts.shape, (d, n_columns)),
        "feature_psi": (arrays["feature_psi"].shape, (d,)),
        "confidence_counts": (arrays["confidence_counts"].shape, (arrays["confidence_edges"].size + 1,)),
    }
    for name, (got, want) in expected.items():
        if tuple(got) != tuple(want):
            raise ValueError(f"{name} has shape {tuple(got)}, expected {tuple(want)}")
    if lookup.ndim != 2 or lookup.dtype != np.uint8 or (lookup.size and int(lookup.max()) >= n_columns - 1):
        raise ValueError("bin lookup table is out of range")
    if arrays["class_shares"].ndim != 1 or arrays["class_shares"].size < 2:
        raise ValueError("class shares must hold at least two classes")
    thresholds = header["thresholds"]
    for key in ("drifted_features_ratio", "confidence_psi", "class_p_value"):
        float(thresholds[key])
    float(thresholds.get("estimated_accuracy_p_value", thresholds.get("accuracy_p_value")))
    for number in (
        thresholds["min_window_samples"],
        header.get("shadow_rows", 0),
        header["window_size"],
        header["n_samples"],
    ):
        int(number)
    if header.get("accuracy") is not None:
        float(header["accuracy"])
    for name in ("confidence_accuracy", "confidence_labelled"):
        if name in arrays and arrays[name].shape != arrays["confidence_counts"].shape:
            raise ValueError(f"{name} must have one value per confidence bin")
    if header.get("shadow_agreement") is not None:
        float(header["shadow_agreement"])
    if check_task(header.get("task", "classification")) == "regression":
        edges = arrays["prediction_edges"]
        if edges.ndim != 1 or edges.size + 1 != arrays["class_shares"].size or not np.all(np.diff(edges) > 0):
            raise ValueError("prediction_edges must be increasing, one fewer than the prediction bins")
        if header.get("errors") is not None:
            ErrorProfile.from_header(header["errors"])
    settings = header.get("settings")
    if settings:
        from .calibration import FitSettings

        unknown = set(settings) - set(FitSettings().as_dict())
        if unknown:
            raise ValueError(f"unknown fit settings {sorted(unknown)}")


def _refuse_oversized(data: bytes) -> None:
    """Refuse an archive that claims more than 1 GiB unpacked (a zip bomb) before reading it."""
    if data[:2] != b"PK":
        return  # not a zip; np.load says what it is
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        claimed = sum(info.file_size for info in archive.infolist())
    if claimed > MAX_UNPACKED_BYTES:
        raise ValueError(f"archive claims {claimed} bytes unpacked, more than the {MAX_UNPACKED_BYTES} allowed")
