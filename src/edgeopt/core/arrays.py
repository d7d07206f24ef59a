"""Arrays in and out of a model: several inputs or outputs by name, and int8 tensor encoding.

``NamedArrays`` holds the inputs of a several-input model (keyed by input name) or the labels /
outputs of a several-output model. ``as_arrays`` / ``match_inputs`` feed given arrays to a
model's inputs (by name, then by unique shape, then by order); ``gather_outputs`` /
``concat_outputs`` assemble outputs. ``quantize_input`` / ``dequantize_output`` convert between
float32 and a quantized tensor with its scale and zero point (``TensorInfo``). Pure numpy: used by
the runtimes, the data loaders and the calibration code alike.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np

from edgeopt.errors import UserError


@dataclass
class TensorInfo:
    name: str
    shape: tuple[int, ...]
    dtype: str
    scale: float | None = None
    zero_point: int | None = None


class NamedArrays:
    """Several arrays with the same number of samples, in a fixed order, sliced together.

    The inputs of a several-input model (keyed by input name) or the labels / outputs of a
    several-output model (in model-output order). ``x[i]``, ``x[a:b]`` and ``x[idx]`` slice every
    array; ``x["name"]`` returns one array; ``len(x)`` is the sample count.
    """

    def __init__(self, arrays: dict[str, np.ndarray] | Sequence[tuple[str, np.ndarray]]):
        self.arrays = dict(arrays)
        if not self.arrays:
            raise UserError("no arrays given")
        lengths = {k: len(v) for k, v in self.arrays.items()}
        if len(set(lengths.values())) > 1:
            raise UserError(f"arrays have different sample counts: {lengths}; every input and label "
                            f"needs one row per sample")

    @property
    def names(self) -> list[str]:
        return list(self.arrays)

    @property
    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Shape of one sample of each array (no sample axis)."""
        return {k: tuple(v.shape[1:]) for k, v in self.arrays.items()}

    def as_list(self) -> list[np.ndarray]:
        return list(self.arrays.values())

    def items(self):
        return self.arrays.items()

    def __len__(self) -> int:
        return len(next(iter(self.arrays.values())))

    def __iter__(self) -> Iterator[str]:
        return iter(self.arrays)

    def __contains__(self, name) -> bool:
        return name in self.arrays

    def __getitem__(self, index):
        if isinstance(index, str):
            return self.arrays[index]
        return NamedArrays({k: v[index] for k, v in self.arrays.items()})

    def map(self, fn) -> "NamedArrays":
        return NamedArrays({k: fn(v) for k, v in self.arrays.items()})

    def __repr__(self) -> str:
        return f"NamedArrays({', '.join(f'{k}: {v.shape}' for k, v in self.arrays.items())})"


Arrays = np.ndarray | NamedArrays


def first_array(x: Arrays) -> np.ndarray:
    """The array itself, or the first of several (e.g. for a one-output view)."""
    return x.as_list()[0] if isinstance(x, NamedArrays) else x



def quantize_input(x: np.ndarray, info: TensorInfo) -> np.ndarray:
    """Float input to the tensor's dtype using its scale/zero point (identity for float)."""
    if info.scale is None or not info.dtype.startswith(("int", "uint")):
        return x.astype(info.dtype, copy=False)
    limits = np.iinfo(info.dtype)
    q = np.round(x / info.scale + info.zero_point)
    return np.clip(q, limits.min, limits.max).astype(info.dtype)


def dequantize_output(y: np.ndarray, info: TensorInfo) -> np.ndarray:
    if info.scale is None or not np.issubdtype(y.dtype, np.integer):
        return y.astype(np.float32, copy=False)
    return ((y.astype(np.float32) - info.zero_point) * info.scale).astype(np.float32)


def canonical_name(name: str) -> str:
    """A tensor name without converter decoration: ``serving_default_image:0`` -> ``image``."""
    name = name[len("serving_default_"):] if name.startswith("serving_default_") else name
    return name[:-2] if name.endswith(":0") else name


def as_arrays(x) -> tuple[list[str], list[np.ndarray]]:
    """(names, arrays) of model inputs given as an array, NamedArrays, dict or list/tuple
    (names are "" where not given)."""
    if hasattr(x, "names") and hasattr(x, "as_list"):
        return list(x.names), list(x.as_list())
    if isinstance(x, dict):
        return list(x), [np.asarray(v) for v in x.values()]
    if isinstance(x, (list, tuple)):
        return [""] * len(x), [np.asarray(v) for v in x]
    return [""], [np.asarray(x)]


def match_inputs(names: list[str], arrays: list[np.ndarray], inputs: list[TensorInfo]) -> tuple[list[int], str]:
    """For each session input, the index of the given array that feeds it, and how they were matched:
    "name" (same or canonical name), "shape" (each input's sample shape fits exactly one array) or
    "order" (the given order). Raises UserError when the counts differ."""
    if len(arrays) != len(inputs):
        want = ", ".join(f"{canonical_name(i.name)} {tuple(i.shape[1:])}" for i in inputs)
        raise UserError(f"the model has {len(inputs)} input(s) ({want}) but {len(arrays)} array(s) were given; "
                        f"give one array per input (.npz keys named like the inputs, or --x-key a,b)")
    if len(inputs) == 1:
        return [0], "only input"
    lowered = [canonical_name(n).lower() for n in names]
    by_name = [lowered.index(canonical_name(i.name).lower()) if canonical_name(i.name).lower() in lowered
               else None for i in inputs]
    if None not in by_name and len(set(by_name)) == len(inputs):
        return by_name, "name"
    fits = [[k for k, a in enumerate(arrays) if _fits(a.shape[1:], i.shape[1:])] for i in inputs]
    if all(len(f) == 1 for f in fits) and len({f[0] for f in fits}) == len(inputs):
        return [f[0] for f in fits], "shape"
    return list(range(len(inputs))), "order"


def _fits(sample_shape, want) -> bool:
    return len(sample_shape) == len(want) and all(w in (-1, None, s) for w, s in zip(want, sample_shape))


def gather_outputs(arrays: list[np.ndarray], outputs: list[TensorInfo]):
    """One output: the array; several: NamedArrays keyed by output name (in ``outputs`` order)."""
    if len(arrays) == 1:
        return arrays[0]
    return NamedArrays({canonical_name(o.name) or f"output_{k}": a for k, (o, a) in enumerate(zip(outputs, arrays))})


def concat_outputs(chunks: list):
    """Concatenate per-batch outputs (arrays or NamedArrays) along the sample axis."""
    if hasattr(chunks[0], "as_list"):
            return NamedArrays({k: np.concatenate([c[k] for c in chunks]) for k in chunks[0].names})
    return np.concatenate(chunks)
