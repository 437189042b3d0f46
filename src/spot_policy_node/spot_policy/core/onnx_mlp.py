"""Write an MLP actor as ONNX without PyTorch: fixtures, benchmarks and stand-in policies.

Same outside as Isaac Lab's exported actor: input ``obs`` [1, N] float32, output ``actions``
[1, 12], ELU between layers, linear output.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

Layer = tuple[np.ndarray, np.ndarray]  # (weight [in, out], bias [out])


def random_mlp(sizes: Sequence[int], seed: int = 0, gain: float = 1.0) -> list[Layer]:
    """Layers with scaled-normal weights, e.g. ``sizes=(48, 512, 256, 128, 12)``."""
    rng = np.random.default_rng(seed)
    return [
        (
            (rng.standard_normal((n_in, n_out)) * gain / np.sqrt(n_in)).astype(np.float32),
            (rng.standard_normal(n_out) * 0.01).astype(np.float32),
        )
        for n_in, n_out in itertools.pairwise(sizes)
    ]


def mlp_forward(layers: Sequence[Layer], obs: np.ndarray) -> np.ndarray:
    """Reference forward pass in numpy (what the ONNX graph computes)."""
    x = np.asarray(obs, dtype=np.float32)
    for i, (w, b) in enumerate(layers):
        x = x @ w + b
        if i < len(layers) - 1:
            x = np.where(x > 0, x, np.expm1(x)).astype(np.float32)
    return x


def mlp_to_onnx(layers: Sequence[Layer], path: Path, input_name: str = "obs", output_name: str = "actions") -> Path:
    n_in, n_out = layers[0][0].shape[0], layers[-1][0].shape[1]
    nodes, inits = [], []
    x = input_name
    for i, (w, b) in enumerate(layers):
        inits += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(b, f"b{i}")]
        y = output_name if i == len(layers) - 1 else f"h{i}"
        nodes.append(helper.make_node("Gemm", [x, f"w{i}", f"b{i}"], [f"z{i}" if y != output_name else y]))
        if y != output_name:
            nodes.append(helper.make_node("Elu", [f"z{i}"], [y], alpha=1.0))
        x = y
    graph = helper.make_graph(
        nodes,
        "actor",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, [1, n_in])],
        [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, [1, n_out])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="spot_policy")
    model.ir_version = 8
    onnx.checker.check_model(model)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path
