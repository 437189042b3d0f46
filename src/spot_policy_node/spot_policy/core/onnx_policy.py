"""ONNX Runtime inference for one observation vector at a time."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort

#: Short names accepted in the ``providers`` parameter, in ONNX Runtime's spelling.
PROVIDER_ALIASES = {
    "tensorrt": "TensorrtExecutionProvider",
    "trt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "cpu": "CPUExecutionProvider",
}
DEFAULT_PROVIDERS = ("tensorrt", "cuda", "cpu")


def choose_providers(
    wanted: Sequence[str],
    available: Sequence[str],
    log: Callable[[str], None] = print,
    info: Callable[[str], None] | None = None,
) -> list[str]:
    """Keep the wanted providers that this ONNX Runtime build has, in preference order.

    CPU is always appended last so a Jetson without TensorRT still runs. The providers skipped are
    said in one line: at ``info`` level when ``wanted`` is the default list (a CPU machine is
    expected to lack TensorRT and CUDA), else through ``log`` (a warning: the user asked for them).
    """
    chosen: list[str] = []
    missing: list[str] = []
    for name in wanted:
        full = PROVIDER_ALIASES.get(name.lower(), name)
        if full in available:
            if full not in chosen:
                chosen.append(full)
        else:
            missing.append(full)
    if "CPUExecutionProvider" not in chosen:
        chosen.append("CPUExecutionProvider")
    if missing:
        say = (info or log) if tuple(n.lower() for n in wanted) == DEFAULT_PROVIDERS else log
        say(f"ONNX Runtime: {', '.join(missing)} not in this build; running on {chosen[0]}")
    return chosen


class OnnxPolicy:
    """A loaded ONNX policy: one float32 vector in, one vector out."""

    def __init__(
        self,
        path: Path,
        providers: Sequence[str] = DEFAULT_PROVIDERS,
        intra_op_threads: int = 1,
        log: Callable[[str], None] = print,
        info: Callable[[str], None] | None = None,
    ) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, int(intra_op_threads))
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        chosen = choose_providers(providers, ort.get_available_providers(), log, info)
        self.session = ort.InferenceSession(str(path), sess_options=options, providers=chosen)
        self.path = Path(path)
        self.provider = self.session.get_providers()[0]
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        self.input_names = tuple(i.name for i in inputs)
        self.output_names = tuple(o.name for o in outputs)
        self.input_shape = tuple(inputs[0].shape) if inputs else ()
        self.output_shape = tuple(outputs[0].shape) if outputs else ()
        # IO binding to preallocated buffers: no per-call allocation or input validation. The
        # binding is made lazily, after the shape checks of the loader have passed.
        self._batch = np.zeros((1, self.input_dim or 0), dtype=np.float32)
        self._input = self._batch[0]
        self._result = np.zeros((1, self.output_dim or 0), dtype=np.float32)
        self._binding: ort.IOBinding | None = None

    @property
    def input_buffer(self) -> np.ndarray:
        """The bound input vector: an observation built here is run without a copy."""
        return self._input

    @property
    def input_dim(self) -> int | None:
        return _last_dim(self.input_shape)

    @property
    def output_dim(self) -> int | None:
        return _last_dim(self.output_shape)

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        """Run one step; returns the raw action (a new float32 array)."""
        if self._binding is None:
            self._bind()
        if obs is not self._input:
            self._input[:] = obs
        self._run()
        return self._result[0].copy()

    def _bind(self) -> None:
        binding = self.session.io_binding()
        binding.bind_ortvalue_input(self.input_names[0], ort.OrtValue.ortvalue_from_numpy(self._batch))
        binding.bind_ortvalue_output(self.output_names[0], ort.OrtValue.ortvalue_from_numpy(self._result))
        self._binding = binding
        # ONNX Runtime's Python run_with_iobinding re-checks graph-capture settings on every call,
        # a few microseconds at 50 Hz that the native method skips. The native handles have kept
        # these names across releases; if a build lacks them, the public method is used.
        native_session = getattr(self.session, "_sess", None)
        native_binding = getattr(binding, "_iobinding", None)
        if native_session is not None and native_binding is not None:
            self._run = lambda: native_session.run_with_iobinding(native_binding, None)
        else:
            self._run = lambda: self.session.run_with_iobinding(binding)


def _last_dim(shape: tuple) -> int | None:
    if not shape:
        return None
    last = shape[-1]
    return last if isinstance(last, int) else None
