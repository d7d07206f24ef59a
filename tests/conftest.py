"""Shared fixtures: small real data and small trained Keras models, built once per session."""
from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from pathlib import Path

import numpy as np
import pytest

from edgeopt.data import load_data

# The MLPerf Tiny reference models and results live in shared/ beside the repository.
MLPERF_DIR = Path(os.environ.get("EDGEOPT_MLPERF_DIR",
                                 Path(__file__).resolve().parents[2] / "shared" / "mlperf_tiny"))


@pytest.fixture(scope="session")
def digits():
    """scikit-learn digits: 8x8x1 images in [0, 1], 10 classes (~1800 samples)."""
    return load_data("digits")


@pytest.fixture(scope="session")
def blobs():
    return load_data("blobs2d")


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def slide_mlp_path(models_dir, blobs):
    """The slide MLP trained on blobs2d, saved as .keras."""
    import keras
    from edgeopt.zoo import compile_classifier, slide_mlp

    keras.utils.set_random_seed(0)
    model = compile_classifier(slide_mlp(), lr=1e-2)
    model.fit(blobs.x_train, blobs.y_train, epochs=20, batch_size=64, verbose=0)
    path = models_dir / "slide_mlp.keras"
    model.save(path)
    return path


@pytest.fixture(scope="session")
def digits_cnn_path(models_dir, digits):
    """A small CNN (width 8) trained on digits for a few epochs, saved as .keras (~95% accuracy)."""
    import keras
    from edgeopt.zoo import compile_classifier, small_cnn

    keras.utils.set_random_seed(0)
    model = compile_classifier(small_cnn(input_shape=(8, 8, 1), width=8), lr=3e-3)
    model.fit(digits.x_train, digits.y_train, epochs=15, batch_size=32, verbose=0)
    path = models_dir / "digits_cnn.keras"
    model.save(path)
    return path


@pytest.fixture(scope="session")
def digits_cnn_tflite(models_dir, digits_cnn_path):
    """The digits CNN converted to float32 .tflite."""
    from edgeopt.convert import keras_to_tflite
    from edgeopt.model_io import load_keras

    path = models_dir / "digits_cnn.tflite"
    path.write_bytes(keras_to_tflite(load_keras(digits_cnn_path)))
    return path


def accuracy(pred: np.ndarray, y: np.ndarray) -> float:
    from edgeopt.core.metrics import task_metrics

    return task_metrics(pred, y, "classification")["accuracy"]
