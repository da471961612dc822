"""Turn Moonshine's ORT-format files (from moonshine-cpp) into plain fp32 ONNX, once, at install time.

moonshine-cpp ships int8 weights in ONNX Runtime's ORT format and a C++ library
that dies on CPUs without AVX-512, so only its two model files are used.
onnxruntime writes an ORT model back out as ONNX (`optimized_model_filepath`);
its int8 weights come with dequantisation chains (Cast -> Mul -> Add on
initializers) that would run again at every decoded token (about 4x slower),
so they are folded here into fp32 initializers. The merged decoder's If
branches get names (onnx's checker and some loaders refuse empty ones).
Finally a known clip must decode to its known text, or the install fails.

Usage: convert_moonshine.py MODEL_DIR   (reads *.ort, writes *.onnx; skips what is done)
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

FOLDABLE = {"Cast", "Mul", "Add", "Sub"}
PARTS = ("encoder_model", "decoder_model_merged")
CHECK_CLIP = "beckett.wav"   # in moonshine-cpp's test-data; its text is the one moonshine's own docs show
CHECK_TEXT = "Ever tried ever failed, no matter try again, fail again, fail better."


def ort_to_onnx(src: Path, dst: Path) -> None:
    """Let onnxruntime load the ORT file and save it as ONNX (basic optimisations only)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(dst)
    ort.InferenceSession(str(src), options, providers=["CPUExecutionProvider"])


def _apply(op: str, args: list[np.ndarray], attrs: dict[str, int]) -> np.ndarray:
    from onnx import helper

    if op == "Cast":
        return args[0].astype(helper.tensor_dtype_to_np_dtype(attrs["to"]))
    fn = {"Mul": np.multiply, "Add": np.add, "Sub": np.subtract}[op]
    out: np.ndarray = fn(args[0], args[1]).astype(np.result_type(args[0], args[1]))
    return out


def fold_constants(model: "onnx.ModelProto") -> int:  # type: ignore[name-defined]  # noqa: F821
    """Replace top-level Cast/Mul/Add/Sub nodes whose inputs are all initializers by their value."""
    from onnx import helper, numpy_helper

    graph = model.graph
    values = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    kept, folded = [], 0
    for node in graph.node:   # nodes are topologically sorted: a chain folds in one pass
        if node.op_type in FOLDABLE and node.input and all(x in values for x in node.input):
            attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
            values[node.output[0]] = _apply(node.op_type, [values[x] for x in node.input], attrs)
            folded += 1
        else:
            kept.append(node)
    used = {x for n in kept for x in n.input} | {o.name for o in graph.output} | _subgraph_inputs(kept)
    del graph.node[:]
    graph.node.extend(kept)
    del graph.initializer[:]
    graph.initializer.extend(numpy_helper.from_array(v, name) for name, v in values.items() if name in used)
    return folded


def _subgraph_inputs(nodes: list["onnx.NodeProto"]) -> set[str]:  # type: ignore[name-defined]  # noqa: F821
    """Names that If/Loop branches read from the outer graph (weights the merged decoder's branches use)."""
    names: set[str] = set()
    for node in nodes:
        for attr in node.attribute:
            if attr.type == attr.GRAPH:
                for inner in attr.g.node:
                    names.update(inner.input)
                names |= _subgraph_inputs(list(attr.g.node))
    return names


def name_branches(model: "onnx.ModelProto") -> None:  # type: ignore[name-defined]  # noqa: F821
    for node in model.graph.node:
        for attr in node.attribute:
            if attr.type == attr.GRAPH and not attr.g.name:
                attr.g.name = f"{node.name or node.op_type}_{attr.name}"


def convert(src: Path, dst: Path) -> None:
    import onnx

    raw = dst.with_suffix(".raw.onnx")
    ort_to_onnx(src, raw)
    model = onnx.load(str(raw))
    folded = fold_constants(model)
    name_branches(model)
    tmp = dst.with_suffix(".partial")
    onnx.save(model, str(tmp))
    tmp.replace(dst)
    raw.unlink()
    print(f"  {dst.name}: folded {folded} dequantisation nodes into fp32 weights", flush=True)


def check(model_dir: Path) -> None:
    """Decode the clip moonshine-cpp ships through the serving code; fail the install unless it reads right."""
    from speechcore.audio import decode_audio
    from speechcore.backends.moonshine_asr import MoonshineModel
    from speechcore.textmetrics import normalize   # case and punctuation do not count

    clip = model_dir / CHECK_CLIP
    text = MoonshineModel(model_dir, threads=1).generate([decode_audio(clip.read_bytes())])[0]
    if normalize(text) != normalize(CHECK_TEXT):
        raise SystemExit(f"moonshine check failed: {clip.name} decoded to {text!r}, expected {CHECK_TEXT!r}")
    print(f"  check: {clip.name} -> {text!r}", flush=True)


def main() -> None:
    model_dir = Path(sys.argv[1])
    todo = [part for part in PARTS if not (model_dir / f"{part}.onnx").exists()]
    for part in todo:
        convert(model_dir / f"{part}.ort", model_dir / f"{part}.onnx")
    if todo:
        check(model_dir)


if __name__ == "__main__":
    main()
