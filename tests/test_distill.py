"""Knowledge distillation: derived students, the loss, regression, and option checks."""
from __future__ import annotations

import numpy as np
import pytest

from edgeopt.errors import UserError
from edgeopt.steps import StepContext


def _ctx(ds, work_dir, **options):
    return StepContext(dataset=ds, work_dir=work_dir, options=options, log=lambda msg: None)


def test_derived_student_is_half_width(digits_cnn_path):
    from edgeopt.model_io import load_keras
    from edgeopt.techniques.distill import scaled_model

    teacher = load_keras(digits_cnn_path)
    student = scaled_model(teacher, 0.5)
    assert student.count_params() < teacher.count_params() / 2.5
    for name in ("conv0", "conv1", "conv2"):
        assert student.get_layer(name).filters == teacher.get_layer(name).filters // 2
    assert student.get_layer("fc").units == teacher.get_layer("fc").units // 2
    assert student.get_layer("logits").units == 10  # the output layer keeps its width
    assert student.outputs[0].shape[-1] == teacher.outputs[0].shape[-1]


def test_distill_trains_student_and_compares_with_baseline(blobs, slide_mlp_path, tmp_path):
    from edgeopt.model_io import load_keras
    from edgeopt.steps import get_step
    from edgeopt.techniques.distill import validation_score

    teacher = load_keras(slide_mlp_path)
    res = get_step("distill").run(_ctx(blobs, tmp_path, epochs=8, lr=1e-2, temperature=3.0,
                                       alpha=0.3), teacher)
    student = res.model
    assert student.get_layer(index=0).units == 8  # 16 -> 8 (Sequential: Dense is layer 0)
    d = res.details
    assert d["student_params"] < d["teacher_params"]
    assert d["teacher_outputs"] == "probabilities"
    assert d["distilled_val"] == validation_score(student, blobs)
    assert d["distilled_val"]["accuracy"] > 0.75  # three blobs; chance is 0.33
    assert d["baseline"]["val"]["accuracy"] > 0.33
    assert d["gain_over_baseline"] == pytest.approx(
        d["distilled_val"]["accuracy"] - d["baseline"]["val"]["accuracy"], abs=1e-4)
    assert teacher.trainable  # the teacher is given back as it came


def test_distillation_loss_matches_formula(digits_cnn_path, digits):
    import keras

    from edgeopt.model_io import load_keras
    from edgeopt.techniques.distill import Distiller, scaled_model

    teacher = load_keras(digits_cnn_path)
    student = scaled_model(teacher, 0.5, seed=1)
    x, y = digits.x_val[:32], digits.y_val[:32]
    T, alpha = 3.0, 0.25
    d = Distiller(student, teacher, task="classification", temperature=T, alpha=alpha, sample=x)
    s = np.asarray(student(x, training=False), dtype=np.float64)
    t = np.asarray(teacher(x, training=False), dtype=np.float64)
    loss = float(d.compute_loss(x=x, y=y, y_pred=keras.ops.convert_to_tensor(s.astype("float32"))))

    def soft(p):
        z = np.log(np.clip(p, 1e-7, 1)) / T
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    pt, ps = soft(t), soft(s)
    kl = (pt * (np.log(pt) - np.log(ps))).sum(axis=1)
    ce = -np.log(np.clip(s[np.arange(len(y)), y], 1e-7, 1))
    want = np.mean(alpha * ce + (1 - alpha) * T ** 2 * kl)
    assert loss == pytest.approx(want, rel=1e-4)


def test_regression_distillation(tmp_path):
    import keras

    from edgeopt.data import make_dataset
    from edgeopt.techniques.distill import Distill

    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 4)).astype("float32")
    y = (x[:, 0] * 2 - x[:, 1] + np.sin(x[:, 2]) + 0.05 * rng.normal(size=600)).astype("float32")
    ds = make_dataset("reg", x, y, task="regression")
    keras.utils.set_random_seed(0)
    teacher = keras.Sequential([keras.Input((4,)), keras.layers.Dense(32, activation="relu"),
                                keras.layers.Dense(1)], name="reg_teacher")
    teacher.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
    teacher.fit(ds.x_train, ds.y_train, epochs=30, batch_size=64, verbose=0)
    res = Distill().run(_ctx(ds, tmp_path, epochs=15, lr=1e-2, alpha=0.5), teacher)
    d = res.details
    assert res.model.get_layer(index=0).units == 16
    assert d["teacher_outputs"] == "logits"
    # a trained student predicts far better than the mean (the variance of y is about 5.5)
    assert d["distilled_val"]["mse"] < 0.25 * float(np.var(ds.y_val))
    assert "mse" in d["baseline"]["val"]


def test_given_student_path(blobs, slide_mlp_path, tmp_path):
    import keras

    from edgeopt.model_io import load_keras
    from edgeopt.techniques.distill import Distill

    student = keras.Sequential([keras.Input((2,)), keras.layers.Dense(6, activation="relu"),
                                keras.layers.Dense(3, activation="softmax")], name="tiny")
    path = tmp_path / "tiny.keras"
    student.save(path)
    res = Distill().run(_ctx(blobs, tmp_path, student=str(path), epochs=2, compare_baseline=False),
                        load_keras(slide_mlp_path))
    assert res.model.name == "tiny"
    assert res.details["student"] == "loaded from tiny.keras"
    assert "baseline" not in res.details

    wrong = keras.Sequential([keras.Input((2,)), keras.layers.Dense(4)], name="wrong")
    with pytest.raises(UserError, match="outputs"):
        Distill().run(_ctx(blobs, tmp_path, student=wrong), load_keras(slide_mlp_path))


@pytest.mark.parametrize("options, message", [
    ({"alpha": 1.5}, "alpha must be in"),
    ({"alpha": -0.1}, "alpha must be in"),
    ({"temperature": 0}, "temperature must be > 0"),
    ({"temperature": -2}, "temperature must be > 0"),
    ({"width": 0}, "width must be > 0"),
    ({"width": "wide"}, "width must be a number"),
])
def test_bad_options(options, message, blobs, slide_mlp_path, tmp_path):
    from edgeopt.model_io import load_keras
    from edgeopt.techniques.distill import Distill

    with pytest.raises(UserError, match=message):
        Distill().run(_ctx(blobs, tmp_path, **options), load_keras(slide_mlp_path))


def test_subclassed_teacher_names_the_model(blobs, tmp_path):
    import keras

    from edgeopt.techniques.distill import Distill

    class Wide(keras.Model):
        def __init__(self):
            super().__init__(name="wide_net")
            self.hidden = keras.layers.Dense(16, activation="relu")
            self.out = keras.layers.Dense(3, activation="softmax")

        def call(self, x):
            return self.out(self.hidden(x))

    teacher = Wide()
    teacher(blobs.x_val[:2])
    with pytest.raises(UserError, match="'wide_net'.*subclassed"):
        Distill().run(_ctx(blobs, tmp_path), teacher)


def test_custom_layer_in_teacher_is_named(blobs, tmp_path):
    import keras

    from edgeopt.techniques.distill import scaled_model

    class Scale(keras.layers.Layer):
        def build(self, shape):
            self.w = self.add_weight(shape=(shape[-1],), initializer="ones")

        def call(self, x):
            return x * self.w

    inp = keras.Input((2,))
    out = keras.layers.Dense(3, activation="softmax")(Scale(name="my_scale")(keras.layers.Dense(8)(inp)))
    with pytest.raises(UserError, match="'my_scale'"):
        scaled_model(keras.Model(inp, out), 0.5)
