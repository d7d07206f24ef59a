"""Keras 3 layer graphs: reach the functional graph of a model and flatten nested models.

A pretrained base model used as one layer (``base = MobileNetV2(...); x = base(inp)``, the usual
transfer-learning shape) hides its layers behind one outer layer. ``flatten`` rebuilds such a
model as one Functional graph whose layers are the inner layers themselves, with identical
outputs, so profiling, explanations and techniques see every layer.

Uses Keras 3's functional internals (``_nodes_by_depth``, ``node.arguments.fill_in``,
``_keras_history``), the same ones ``Functional._run_through_graph`` uses; keras is pinned.
"""
from __future__ import annotations

from edgeopt.errors import UserError


def graph_of(model):
    """The Functional graph behind a Sequential or Functional model; None for a subclassed model
    (or a Sequential never built with an input shape)."""
    import keras

    if isinstance(model, keras.Sequential):
        model = getattr(model, "_functional", None)
    if model is None or not hasattr(model, "_nodes_by_depth"):
        return None
    return model


def nested_models(model) -> list[str]:
    """Names of the layers of ``model`` that are themselves models (one level)."""
    import keras

    func = graph_of(model)
    return [lyr.name for lyr in (func.layers if func is not None else []) if isinstance(lyr, keras.Model)]


def flatten(model):
    """``model`` with every nested Sequential/Functional model inlined, recursively.

    Returns ``model`` itself when nothing is nested; otherwise a new Functional model (same
    name, same inputs and outputs) whose layers are fresh copies of the inner and outer layers
    with the same weights. Inner layer names are kept, prefixed with the nested model's name
    (and numbered) only where they would clash. A layer shared by several calls stays shared. A nested model
    called with ``training=False`` keeps that for its BatchNormalization/Dropout layers.

    Raises UserError for a subclassed model or a subclassed nested model (no layer graph).
    """
    import keras

    func = graph_of(model)
    if func is None:
        raise UserError(f"{model.name!r} is a subclassed Keras model ({type(model).__name__}); its "
                        f"layer graph cannot be read: rebuild it with the functional API")
    if not nested_models(model):
        return model
    inputs = [keras.Input(shape=t.shape[1:], dtype=t.dtype, name=_producer(t).name) for t in func.inputs]
    used = {_producer(t).name for t in func.inputs}
    outputs = _Inliner(used).inline(func, inputs, prefix="", training=None)
    return keras.Model(inputs if len(inputs) > 1 else inputs[0],
                       outputs if len(outputs) > 1 else outputs[0], name=model.name)


def _producer(tensor):
    return tensor._keras_history.operation


class _Inliner:
    def __init__(self, used: set[str]):
        self.used = used
        self.clones: dict[int, object] = {}  # id(original layer) -> its copy (shared layers stay shared)

    def inline(self, func, inputs: list, prefix: str, training) -> list:
        import keras
        from keras import tree

        tensors = {id(t): new for t, new in zip(func.inputs, inputs)}
        for depth in sorted(func._nodes_by_depth, reverse=True):
            for node in func._nodes_by_depth[depth]:
                if node.is_input or not node.operation:
                    continue
                args, kwargs = node.arguments.fill_in(tensors)
                layer = node.operation
                if training is not None and "training" in kwargs:
                    kwargs["training"] = training
                if isinstance(layer, keras.Model):
                    inner = graph_of(layer)
                    if inner is None:
                        raise UserError(f"nested model {layer.name!r} is a subclassed model; its layers "
                                        f"cannot be inlined: rebuild it with the functional API")
                    ins = [t for t in tree.flatten((args, kwargs)) if isinstance(t, keras.KerasTensor)]
                    mode = kwargs.get("training", training)
                    out = self.inline(inner, ins, f"{layer.name}_", mode if mode is not None else training)
                else:
                    if training is not None and _takes_training(layer):
                        kwargs["training"] = training
                    out = self._call(layer, prefix, args, kwargs)
                for ref, new in zip(node.outputs, tree.flatten(out)):
                    tensors[id(ref)] = new
        return [tensors[id(t)] for t in func.outputs]

    def _call(self, layer, prefix: str, args, kwargs):
        copy = self.clones.get(id(layer))
        fresh = copy is None
        if fresh:
            name = self._unique(layer.name, prefix)
            self.used.add(name)
            copy = type(layer).from_config({**layer.get_config(), "name": name})
            self.clones[id(layer)] = copy
        out = copy(*args, **kwargs)
        if fresh and layer.weights:
            copy.set_weights(layer.get_weights())
            copy.trainable = layer.trainable
        return out


    def _unique(self, name: str, prefix: str) -> str:
        for candidate in (name, f"{prefix}{name}"):
            if candidate not in self.used:
                return candidate
        k = 1
        while f"{prefix}{name}_{k}" in self.used:
            k += 1
        return f"{prefix}{name}_{k}"


def _takes_training(layer) -> bool:
    import inspect

    try:
        return "training" in inspect.signature(layer.call).parameters
    except (TypeError, ValueError):
        return False


__all__ = ["graph_of", "nested_models", "flatten"]
