"""Knowledge distillation: train a smaller student to mimic the (incoming) teacher model.

Classification: ``alpha * CE(labels, student) + (1 - alpha) * T^2 * KL(softmax(t/T) || softmax(s/T))``
(Hinton et al. 2015; the T^2 factor keeps the soft-target gradients on the scale of the hard
ones when T changes). Regression: ``alpha * MSE(labels, student) + (1 - alpha) * MSE(teacher,
student)``. Models whose outputs are probabilities (a final softmax or sigmoid) are handled by
taking logs: log-probabilities are logits up to a per-row constant, which softmax ignores.

The student is the user's (``student``: a .keras path or a keras.Model) or derived from the
teacher's architecture with every ``filters``/``units`` scaled by ``width`` (output layer kept).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgeopt.errors import UserError, one_line
from edgeopt.steps import StepContext, StepResult, register
from edgeopt.techniques import configs

# Defaults live in configs.Distill. T=2, alpha=0.5 beat T=4, alpha=0.2 (and T=3) by 1-2 points
# on a half-width Fashion-MNIST student trained 3 epochs on 5k rows; higher temperatures slowed
# early learning there.
WIDTH_KEYS = ("filters", "units")  # config keys that set a layer's width
PROB_EPS = 1e-7  # probabilities are clipped before the log (log 0 = -inf)


@register("distill")
class Distill:
    """Knowledge distillation from the incoming model (teacher) into a smaller student.

    Options (``ctx.options``):
      student (str | keras.Model)  a .keras path or a model; default: derived from the teacher
      width (float > 0)            width multiplier of the derived student, default 0.5
      temperature (float > 0)      softening temperature T, default 2
      alpha (float in [0, 1])      weight of the hard-label loss (1 - alpha: teacher loss), default 0.5
      epochs (int)                 training epochs, default 10 (early stopping on validation)
      lr (float)                   learning rate, default 1e-3 (the student trains from scratch)
      compare_baseline (bool)      also train the same student without the teacher (same epochs,
                                   seed and initial weights) and record both validation scores
    plus the fine-tuning options of ``finetune`` (``batch_size``, ``patience``, ``train_samples``).
    """

    name = "distill"
    kind = "keras"
    config = configs.Distill

    def run(self, ctx: StepContext, model) -> StepResult:
        student, _, details = distill(model, ctx)
        return StepResult(model=student, details=details)


def distill(teacher, ctx: StepContext):
    """Train a student against ``teacher`` on ``ctx.dataset``; return ``(student, baseline,
    details)``. ``baseline`` is the same student trained without the teacher (same initial
    weights, epochs and seed), or None when ``compare_baseline`` is false or it cannot be copied."""
    import keras

    from edgeopt.techniques.finetune import default_loss, fine_tune
    from edgeopt.techniques.prune import configured_ctx

    ctx = configured_ctx(ctx, configs.Distill)
    cfg = ctx.config
    opts = {"width": cfg.width, "temperature": cfg.temperature, "alpha": cfg.alpha, "epochs": cfg.epochs,
            "lr": cfg.lr}
    ds = ctx.dataset
    keras.utils.set_random_seed(int(ctx.seed))
    student, origin = resolve_student(teacher, {"student": cfg.student}, cfg.width)
    check_compatible(teacher, student)
    initial = [np.array(w) for w in student.get_weights()]
    was_trainable = teacher.trainable
    try:
        distiller = Distiller(student, teacher, task=ds.task, temperature=opts["temperature"],
                              alpha=opts["alpha"], sample=ds.x_val[:16])
        # the compiled loss is unused (compute_loss replaces it); fine_tune needs one
        _, report = fine_tune(distiller, ctx, epochs=opts["epochs"], lr=opts["lr"],
                              loss=default_loss(student, ds))
    finally:
        teacher.trainable = was_trainable
    details: dict[str, Any] = {
        "student": origin,
        "teacher_params": int(teacher.count_params()),
        "student_params": int(student.count_params()),
        "temperature": opts["temperature"], "alpha": opts["alpha"],
        "teacher_outputs": "probabilities" if distiller.teacher_probs else "logits",
        "fine_tune": report,
        "teacher_val": validation_score(teacher, ds),
        "distilled_val": validation_score(student, ds),
    }
    baseline = None
    if cfg.compare_baseline:
        baseline, details["baseline"] = _baseline(student, initial, ctx, opts)
        details["gain_over_baseline"] = _gain(details["distilled_val"], details["baseline"], ds.task)
    ctx.log(f"distill: student {details['student_params']} params "
            f"({details['teacher_params']} teacher), val {details['distilled_val']}"
            + (f", without teacher {details['baseline'].get('val')}" if "baseline" in details else ""))
    return student, baseline, details


# ---------------------------------------------------------------- options and students

def resolve_student(teacher, options: dict, width: float):
    """(student model, description): the user's student or one derived at ``width``."""
    import keras

    given = options.get("student")
    if given is None:
        return scaled_model(teacher, width), f"derived from {teacher.name} at width {width:g}"
    if isinstance(given, keras.Model):
        return given, f"given model {given.name}"
    if isinstance(given, (str, Path)):
        from edgeopt.model_io import load_keras

        return load_keras(Path(given)), f"loaded from {Path(given).name}"
    raise UserError(f"distill option student must be a .keras path or a Keras model, "
                    f"got {type(given).__name__}")


def check_compatible(teacher, student) -> None:
    t_in, s_in = tuple(teacher.inputs[0].shape[1:]), tuple(student.inputs[0].shape[1:])
    if t_in != s_in:
        raise UserError(f"student {student.name} takes inputs {s_in} but the teacher takes {t_in}")
    t_out, s_out = tuple(teacher.outputs[0].shape[1:]), tuple(student.outputs[0].shape[1:])
    if t_out != s_out:
        raise UserError(f"student {student.name} outputs {s_out} but the teacher outputs {t_out}; "
                        f"they must match to distill")


def scaled_model(model, width: float, seed: int | None = None):
    """The same architecture with every filters/units multiplied by ``width`` (at least 1),
    except the layers that produce the outputs; weights freshly initialised."""
    import keras

    from edgeopt.techniques.qat import functional_graph

    if not isinstance(model, keras.Sequential) and not hasattr(model, "_nodes_by_depth"):
        raise UserError(f"cannot derive a student from teacher {model.name!r}: it is a subclassed "
                        f"model ({type(model).__name__}) whose architecture cannot be rebuilt at "
                        f"another width; pass a student model with the 'student' option")
    func = functional_graph(model, "distill")
    for layer in func.layers:
        if not type(layer).__module__.startswith("keras.") and layer.weights:
            raise UserError(f"cannot derive a student: layer {layer.name!r} ({type(layer).__name__}) "
                            f"is a custom layer that cannot be width-scaled; pass a student model "
                            f"with the 'student' option")
    keep = output_width_layers(func)
    config = model.get_config()
    for entry in config["layers"]:
        entry.pop("build_config", None)  # recorded input shapes of the teacher's widths
        cfg = entry.get("config", {})
        if cfg.get("name") in keep:
            continue
        for key in WIDTH_KEYS:
            if isinstance(cfg.get(key), int):
                cfg[key] = max(1, int(round(cfg[key] * width)))
    config.pop("build_config", None)
    config["name"] = f"{model.name}_student"
    if seed is not None:
        keras.utils.set_random_seed(int(seed))
    try:
        return type(model).from_config(config)
    except Exception as e:  # a scaled width that another layer depends on (e.g. a Reshape)
        raise UserError(f"cannot rebuild {model.name} at width {width:g}: {one_line(e)}; "
                        f"pass a student model with the 'student' option") from None


def output_width_layers(func) -> set[str]:
    """Names of the layers whose width is fixed by the outputs: walking back from each output
    through width-less layers (activations, reshapes, dropout), the first layer with a width."""
    keep, stack, seen = set(), [t._keras_history.operation for t in func.outputs], set()
    while stack:
        layer = stack.pop()
        if id(layer) in seen:
            continue
        seen.add(id(layer))
        if any(isinstance(layer.get_config().get(k), int) for k in WIDTH_KEYS):
            keep.add(layer.name)
            continue
        for node in layer._inbound_nodes:
            stack.extend(t._keras_history.operation for t in node.input_tensors)
    return keep


# ---------------------------------------------------------------- training

def _distiller_class():
    import keras
    from keras import ops

    from edgeopt.techniques.finetune import outputs_are_probabilities

    class _Distiller(keras.Model):
        """Wraps student and frozen teacher; ``call`` is the student, so metrics and
        validation report the student; ``compute_loss`` adds the teacher's targets."""

        def __init__(self, student, teacher, *, task: str, temperature: float, alpha: float,
                     sample: np.ndarray):
            super().__init__(name="distiller")
            self.student = student
            self.teacher = teacher
            self.teacher.trainable = False
            self.task = task
            self.temperature = float(temperature)
            self.alpha = float(alpha)
            classification = task == "classification"
            self.teacher_probs = classification and outputs_are_probabilities(teacher, sample)
            self.student_probs = classification and outputs_are_probabilities(student, sample)

        def call(self, x, training=False):
            return self.student(x, training=training)

        def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
            t_out = ops.stop_gradient(self.teacher(x, training=False))
            if self.task == "classification":
                loss = self._classification_loss(y, y_pred, t_out)
            else:
                y = ops.reshape(ops.cast(y, y_pred.dtype), ops.shape(y_pred))
                loss = (self.alpha * ops.mean(ops.square(y - y_pred))
                        + (1 - self.alpha) * ops.mean(ops.square(t_out - y_pred)))
            for extra in self.student.losses:  # regularisers
                loss = loss + ops.sum(extra)
            return loss

        def _classification_loss(self, y, y_pred, t_out):
            s_logits = _as_logits(y_pred, self.student_probs)
            t_logits = _as_logits(t_out, self.teacher_probs)
            T = self.temperature
            t_soft = ops.softmax(t_logits / T, axis=-1)
            s_log_soft = ops.log_softmax(s_logits / T, axis=-1)
            kl = ops.sum(t_soft * (ops.log(ops.maximum(t_soft, 1e-12)) - s_log_soft), axis=-1)
            y = ops.reshape(ops.cast(y, "int32"), (-1,))
            hard = keras.losses.sparse_categorical_crossentropy(y, s_logits, from_logits=True)
            return ops.mean(self.alpha * hard + (1 - self.alpha) * (T ** 2) * kl)

    return _Distiller


def Distiller(student, teacher, **kwargs):  # noqa: N802 - reads as the class it builds
    """A keras.Model that trains ``student`` against ``teacher`` (see the module docstring)."""
    return _distiller_class()(student, teacher, **kwargs)


def _as_logits(out, probabilities: bool):
    """Logits for softmax over the last axis; one sigmoid unit becomes two logits [0, z]."""
    from keras import ops

    if out.shape[-1] == 1:
        z = ops.log(ops.clip(out, PROB_EPS, 1.0)) - ops.log(ops.clip(1.0 - out, PROB_EPS, 1.0)) \
            if probabilities else out
        return ops.concatenate([ops.zeros_like(z), z], axis=-1)
    return ops.log(ops.clip(out, PROB_EPS, 1.0)) if probabilities else out


def validation_score(model, ds) -> dict:
    """Accuracy (classification) or MSE (regression) on the validation split."""
    pred = np.asarray(model.predict(ds.x_val, batch_size=256, verbose=0))
    if ds.task == "classification":
        from edgeopt.core.metrics import task_metrics

        return {"accuracy": round(task_metrics(pred, ds.y_val, ds.task)["accuracy"], 5)}
    return {"mse": round(float(np.mean((pred.reshape(ds.y_val.shape) - ds.y_val) ** 2)), 6)}


def _baseline(student, initial: list, ctx: StepContext, opts: dict) -> tuple[Any, dict]:
    """The same student, from the same initial weights, trained on labels only."""
    import keras

    from edgeopt.techniques.finetune import fine_tune

    try:
        plain = keras.models.clone_model(student)
        plain.set_weights(initial)
    except Exception as e:  # subclassed students cannot always be cloned
        return None, {"skipped": f"cannot copy the student: {one_line(e, 150)}"}
    _, report = fine_tune(plain, ctx, epochs=opts["epochs"], lr=opts["lr"])
    return plain, {"val": validation_score(plain, ctx.dataset), "epochs_run": report.get("epochs_run")}


def _gain(distilled: dict, baseline: dict, task: str) -> float | None:
    if "val" not in baseline:
        return None
    if task == "classification":
        return round(distilled["accuracy"] - baseline["val"]["accuracy"], 5)
    return round(baseline["val"]["mse"] - distilled["mse"], 6)  # positive: distillation helped
