"""A TFDS builder whose splits are numpy arrays generated locally (no download, no TensorFlow)."""

from __future__ import annotations

import abc
import inspect
from collections.abc import Iterator
from typing import ClassVar

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

FEATURES_KEY = "features"
LABEL_KEY = "label"
TARGET_KEY = "target"


# TFDS ships no types, so mypy checks the keyword against object.__init_subclass__; TFDS's
# RegisteredDataset.__init_subclass__ takes it.
class ArrayBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):  # type: ignore[call-arg]
    """Writes the arrays of `_make_splits()` as TFDS records, one example per row, in order.

    Subclasses set `name`, `TASK`, `FEATURE_SHAPE`, `NUM_CLASSES` (classification) or
    `NUM_OUTPUTS` (regression), and implement `_make_splits`. Records keep generation order
    (`disable_shuffling`), so reading them back gives exactly the generated arrays.
    """

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES: ClassVar[dict[str, str]] = {"1.0.0": "Initial release."}
    disable_shuffling: ClassVar[bool] = True

    TASK: ClassVar[str] = "classification"
    FEATURE_SHAPE: ClassVar[tuple[int, ...]] = ()
    NUM_CLASSES: ClassVar[int] = 0
    NUM_OUTPUTS: ClassVar[int] = 0
    CLASS_NAMES: ClassVar[tuple[str, ...]] = ()
    FEATURE_NAMES: ClassVar[tuple[str, ...]] = ()
    HOMEPAGE: ClassVar[str] = ""

    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls) -> epath.Path:
        """The builder's source file (TFDS 4.9.10's own needs `importlib_resources`, a backport
        it only declares for Python < 3.9, whenever the builder lives in an installed package)."""
        return epath.Path(inspect.getfile(cls))

    def _info(self) -> tfds.core.DatasetInfo:
        if self.TASK == "classification":
            class_names = self.CLASS_NAMES or tuple(str(i) for i in range(self.NUM_CLASSES))
            target_key, target = LABEL_KEY, tfds.features.ClassLabel(names=list(class_names))
        else:
            target_key = TARGET_KEY
            target = tfds.features.Tensor(shape=(self.NUM_OUTPUTS,), dtype=np.float32)
        features = tfds.features.FeaturesDict(
            {
                FEATURES_KEY: tfds.features.Tensor(shape=self.FEATURE_SHAPE, dtype=np.float32),
                target_key: target,
            }
        )
        return tfds.core.DatasetInfo(
            builder=self,
            description=(self.__doc__ or "").strip(),
            features=features,
            supervised_keys=(FEATURES_KEY, target_key),
            homepage=self.HOMEPAGE or None,
            disable_shuffling=self.disable_shuffling,
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager) -> dict:
        del dl_manager  # Everything is generated locally.
        return {
            split: self._generate_examples(features, targets)
            for split, (features, targets) in self._make_splits().items()
        }

    def _generate_examples(self, features: np.ndarray, targets: np.ndarray) -> Iterator:
        features = np.asarray(features, dtype=np.float32)
        if self.TASK == "classification":
            target_key, targets = LABEL_KEY, np.asarray(targets, dtype=np.int64)
        else:
            target_key = TARGET_KEY
            targets = np.asarray(targets, dtype=np.float32).reshape(len(targets), -1)
        for index in range(len(features)):
            yield index, {FEATURES_KEY: features[index], target_key: targets[index]}

    @abc.abstractmethod
    def _make_splits(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Returns {split: (features [n, *FEATURE_SHAPE], labels [n] or targets [n, O])}."""
