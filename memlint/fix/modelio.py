"""Model files for `memlint fix`: where the weights are, saving a stage, publishing the output
atomically, and running a graph transform when the weights file is absent.

Output: saved with external data (`OUT.data` beside it) when the input kept its weights
external or the model would be over 2 GB, else as one file. Every stage is written in a
temporary folder inside the output's folder, so publishing is two os.replace calls (the data
file, then the model); the input is never written.

Weights absent: a graph transform runs twice on stand-ins (random weights of the right shapes
and dtypes, two seeds). The output keeps the input's external references for every weight the
transform passed through unchanged; a weight it rewrote, a new tensor that differs between the
two runs, or a graph that differs between them means the transform used the values: it is
refused.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from memlint.errors import MemlintError

PROTO_LIMIT = 2**31 - 2**26  # a proto must stay under 2 GB to serialise; leave 64 MB of graph
STANDIN_LIMIT = 2**30  # bytes of stand-in weights memlint will make to run a graph transform


class Refused(MemlintError):
    """A transform that cannot run on this model (the reason is one line)."""


@dataclass(frozen=True)
class Weights:
    external: bool  # the input keeps (some) weights in external data files
    missing: tuple[str, ...]  # external data files that are not there (relative locations)
    external_bytes: int

    @property
    def present(self) -> bool:
        return not self.missing


def _location(tensor: Any) -> str:
    return next((e.value for e in tensor.external_data if e.key == "location"), "")


def _external(proto: Any) -> list:
    import onnx

    return [t for t in proto.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]


def _nbytes(tensor: Any) -> int:
    import numpy as np
    import onnx

    count = int(np.prod(tensor.dims, dtype=np.int64))
    return count * np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type)).itemsize


def weights_of(model: Path) -> Weights:
    import onnx

    proto = onnx.load(str(model), load_external_data=False)
    tensors = _external(proto)
    locations = sorted({_location(t) for t in tensors})
    missing = tuple(loc for loc in locations if not (model.parent / loc).is_file())
    return Weights(bool(tensors), missing, sum(_nbytes(t) for t in tensors))


def with_domains(proto: Any) -> Any:
    """Import the opset of every node domain (the libraries add com.microsoft nodes and leave
    the import to their own save, as onnxruntime's OnnxModel.save does)."""
    imported = {o.domain for o in proto.opset_import}
    for domain in sorted({n.domain for n in proto.graph.node} - imported - {"ai.onnx"}):
        opset = proto.opset_import.add()
        opset.domain, opset.version = domain, 1
    return proto


def save(proto: Any, path: Path, external: bool) -> None:
    """Write a stage: its weights to `path.name + '.data'` beside it when `external`."""
    import onnx

    with_domains(proto)
    if external or proto.ByteSize() > PROTO_LIMIT:
        onnx.save(proto, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                  location=path.name + ".data", size_threshold=1024)
    else:
        onnx.save(proto, str(path))


def publish(stage: Path, output: Path) -> None:
    """Move a stage's files (named after `output`) into place: the data first, then the model."""
    data = stage.with_name(stage.name + ".data")
    if data.exists():
        os.replace(data, output.with_name(output.name + ".data"))
    os.replace(stage, output)


def _standin(proto: Any, seed: int) -> tuple[Any, dict]:
    """A copy of `proto` whose external weights are random arrays (name -> array)."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    rng = np.random.default_rng(seed)
    copy = onnx.ModelProto()
    copy.CopyFrom(proto)
    arrays = {}
    for index, tensor in enumerate(copy.graph.initializer):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type))
        shape = tuple(tensor.dims)
        if dtype.kind == "f":
            array = (rng.standard_normal(shape) * 0.02).astype(dtype)
        elif dtype.kind == "b":
            array = rng.integers(0, 2, shape).astype(dtype)
        else:
            array = rng.integers(1, 8, shape).astype(dtype)
        arrays[tensor.name] = array
        copy.graph.initializer[index].CopyFrom(numpy_helper.from_array(array, tensor.name))
    return copy, arrays


def without_weights(run, model: Path, folder: Path, name: str) -> tuple[Any, str]:
    """`run(path)` (-> (ModelProto, note)) on stand-ins of `model`'s absent weights; the result
    refers to the input's external data for every weight it kept (see the module docstring)."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    proto = onnx.load(str(model), load_external_data=False)
    originals = {t.name: t for t in _external(proto)}
    if sum(_nbytes(t) for t in originals.values()) > STANDIN_LIMIT:
        raise Refused(f"{name}: the weights file is absent and the model is too large to run "
                      "it on stand-in weights")
    results = []
    for seed in (1, 2):
        copy, arrays = _standin(proto, seed)
        path = folder / f"standin-{seed}.onnx"
        save(copy, path, external=False)
        result, note = run(path)
        results.append((result, arrays, note))
    (first, arrays_a, note), (second, arrays_b, _) = results
    if list(first.graph.node) != list(second.graph.node):
        raise Refused(f"{name}: needs the weights (its rewrite depends on their values), and the "
                      "weights file is absent")
    kept = onnx.ModelProto()
    kept.CopyFrom(first)
    for index, (a, b) in enumerate(zip(first.graph.initializer, second.graph.initializer)):
        value_a, value_b = numpy_helper.to_array(a), numpy_helper.to_array(b)
        if (a.name in originals and a.name in arrays_a
                and value_a.shape == arrays_a[a.name].shape
                and np.array_equal(value_a, arrays_a[a.name])
                and np.array_equal(value_b, arrays_b[a.name])):
            kept.graph.initializer[index].CopyFrom(originals[a.name])
        elif a.name != b.name or value_a.shape != value_b.shape or not np.array_equal(value_a, value_b):
            raise Refused(f"{name}: needs the weights (it computes {a.name!r} from their values), "
                          "and the weights file is absent")
    return kept, note
