"""Register gangplank's Keras objects for ``keras.models.load_model`` as soon as Keras is loaded.

``import gangplank`` must not import Keras (seconds, and the drift side does
without it), yet a model compiled with :class:`gangplank.ConfusionMatrix` must
load in any process that imported gangplank. So :func:`register_with_keras`
imports :mod:`gangplank.metrics` (whose decorator registers the class) at once
if Keras is loaded already, and otherwise puts a finder on ``sys.meta_path``
that does it right after the first ``import keras`` completes.

Example:
    >>> import gangplank, keras  # doctest: +SKIP
    >>> keras.saving.get_registered_object("gangplank>ConfusionMatrix")  # doctest: +SKIP
    <class 'gangplank.metrics.ConfusionMatrix'>
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import logging
import sys
from importlib.machinery import ModuleSpec
from types import ModuleType

logger = logging.getLogger("gangplank")

KERAS_OBJECT_MODULES = ("gangplank.metrics",)


def register_with_keras() -> None:
    """Register gangplank's Keras objects now if Keras is loaded, else right after it loads."""
    if _keras_loaded():
        _register()
    elif not any(isinstance(finder, _AfterKerasLoads) for finder in sys.meta_path):
        sys.meta_path.insert(0, _AfterKerasLoads())


def _keras_loaded() -> bool:
    keras = sys.modules.get("keras")
    spec = getattr(keras, "__spec__", None)
    return keras is not None and not getattr(spec, "_initializing", False)


def _register() -> None:
    # Never let a failure here break the user's own `import keras`.
    try:
        for name in KERAS_OBJECT_MODULES:
            importlib.import_module(name)
    except Exception as error:  # noqa: BLE001 - reported, and raised again where the class is used
        logger.warning("gangplank: could not register its Keras objects (%s); load_model may not find them", error)


class _AfterKerasLoads(importlib.abc.MetaPathFinder):
    """Finds ``keras`` through the other finders and registers gangplank's objects once it has executed."""

    def __init__(self) -> None:
        self._finding = False

    def find_spec(self, fullname: str, path=None, target: ModuleType | None = None) -> ModuleSpec | None:
        if fullname != "keras" or self._finding:
            return None
        self._finding = True
        try:
            spec = importlib.util.find_spec("keras")
        finally:
            self._finding = False
        if spec is None or spec.loader is None:
            return None
        spec.loader = _RegisterAfter(spec.loader, self)
        return spec


class _RegisterAfter(importlib.abc.Loader):
    """Runs Keras's own loader, puts it back on the module, then registers and retires the finder."""

    def __init__(self, loader: importlib.abc.Loader, finder: _AfterKerasLoads) -> None:
        self._loader = loader
        self._finder = finder

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        module.__loader__ = self._loader
        if module.__spec__ is not None:
            module.__spec__.loader = self._loader
        self._loader.exec_module(module)
        if self._finder in sys.meta_path:
            sys.meta_path.remove(self._finder)
        _register()
