import numpy as np
import pytest

from edgeopt.data import (check_against_model, fashion_mnist_available, load_data, make_dataset,
                          stratified_indices)
from edgeopt.errors import UserError


def test_builtins_shapes(digits, blobs):
    assert digits.input_shape == (8, 8, 1) and digits.num_classes == 10
    assert 0.0 <= digits.x_train.min() and digits.x_train.max() <= 1.0
    assert blobs.input_shape == (2,) and blobs.num_classes == 3
    total = len(digits.x_train) + len(digits.x_val) + len(digits.x_eval)
    assert total == 1797


@pytest.mark.skipif(not fashion_mnist_available(), reason="dataset-fashion-mnist not installed")
def test_fashion_mnist_official_split():
    ds = load_data("fashion-mnist")
    assert ds.input_shape == (28, 28, 1)
    assert len(ds.x_eval) == 10000 and len(ds.x_train) + len(ds.x_val) == 60000


def test_stratified_calibration_keeps_every_class(digits):
    idx = stratified_indices(digits.y_train, 50, seed=1)
    assert len(idx) == 50 and len(set(idx)) == 50
    assert set(digits.y_train[idx]) == set(range(10))
    assert digits.calibration(20).shape == (20, 8, 8, 1)


def test_npz_custom_keys(tmp_path):
    x = np.random.rand(40, 3).astype(np.float32)
    y = np.arange(40) % 2
    np.savez(tmp_path / "d.npz", feats=x, target=y)
    ds = load_data(tmp_path / "d.npz", x_key="feats", y_key="target")
    assert ds.input_shape == (3,) and ds.num_classes == 2
    with pytest.raises(UserError, match="--x-key"):
        load_data(tmp_path / "d.npz")


def test_npy_pair_and_csv(tmp_path):
    np.save(tmp_path / "set_x.npy", np.random.rand(30, 4))
    np.save(tmp_path / "set_y.npy", np.arange(30) % 3)
    assert load_data(tmp_path / "set_x.npy").num_classes == 3
    (tmp_path / "t.csv").write_text("a,b,label\n" + "".join(f"{i},{i * 2},{i % 2}\n" for i in range(30)))
    ds = load_data(tmp_path / "t.csv", label_column="label")
    assert ds.input_shape == (2,) and ds.num_classes == 2
    with pytest.raises(UserError, match="no column named 'nope'"):
        load_data(tmp_path / "t.csv", label_column="nope")


def test_image_folder_resized(tmp_path):
    from PIL import Image

    for c in ("cat", "dog"):
        (tmp_path / c).mkdir()
        for i in range(6):
            Image.fromarray((np.random.rand(20, 30, 3) * 255).astype(np.uint8)).save(tmp_path / c / f"{i}.png")
    ds = load_data(tmp_path, image_size=(8, 10))
    assert ds.input_shape == (8, 10, 3) and ds.class_names == ["cat", "dog"]


@pytest.mark.parametrize("x,y,match", [
    (np.zeros((0, 2)), np.zeros(0), "empty"),
    (np.full((10, 2), np.nan), np.zeros(10), "NaN"),
    (np.zeros((10, 2)), np.zeros(9), "10 inputs but 9 labels"),
    (np.zeros((2, 2)), np.zeros(2), "too few"),
])
def test_bad_arrays(x, y, match):
    with pytest.raises(UserError, match=match):
        make_dataset("t", x, y)


def test_checks_against_model(digits):
    with pytest.raises(UserError, match=r"input shape \(8, 8, 1\) but the model expects \(28, 28, 1\)"):
        check_against_model(digits, (28, 28, 1), 10)
    with pytest.raises(UserError, match="10 classes.*outputs 3 classes"):
        check_against_model(digits, (8, 8, 1), 3)
    assert check_against_model(digits, (None, None, 1), 12) == ["data has 10 classes, model outputs 12"]


def test_value_range_warning_for_quantized_inputs(blobs):
    from edgeopt.data import quantized_input_range

    rng = quantized_input_range(1 / 255, -128, "int8")  # covers 0..1
    assert rng == pytest.approx((0.0, 1.0))
    warnings = check_against_model(blobs, (2,), 3, rng)  # blobs are roughly -5..6
    assert len(warnings) == 1 and "quantized input covers 0..1" in warnings[0]
    assert quantized_input_range(None, None, "float32") is None


def test_splits_are_stratified_with_the_usual_sizes(digits):
    sizes = (len(digits.x_train), len(digits.x_val), len(digits.x_eval))
    assert sizes == (1797 - 359 - 180, 180, 359)  # eval 20%, val 10% (rounded), train the rest
    for y in (digits.y_eval, digits.y_val):
        counts = np.bincount(y, minlength=10)
        assert counts.max() - counts.min() <= 2, counts  # digits is balanced: so is every split
    skewed_y = np.r_[np.zeros(90, int), np.ones(10, int)]
    ds = make_dataset("skewed", np.random.rand(100, 2), skewed_y, seed=3)
    assert np.bincount(ds.y_eval).tolist() == [18, 2] and np.bincount(ds.y_val).tolist() == [9, 1]
    tiny = make_dataset("tiny", np.random.rand(5, 2), np.array([0, 0, 0, 1, 2]))  # cannot stratify
    assert (len(tiny.x_train), len(tiny.x_val), len(tiny.x_eval)) == (3, 1, 1)
