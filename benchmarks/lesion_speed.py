"""Speed of COVID-Lesion Net inference at 512x512.

CPU (default): seconds per 512x512 slice with N threads (default 2), two ways:
  * workflow path: ``segment_lesions`` on a 512x512 phantom (0.7 mm pixels, resampled to the
    model's training spacing, lung everywhere), wall seconds / slices;
  * raw net: forward passes on 512x512 slices at native size, batch 8.
GPU (``--device cuda``): slices/s of the raw net at 512x512 for several batch sizes and
precisions (fp32, bf16 and fp16 autocast), with and without channels_last, under
``torch.inference_mode()``.

Usage: python benchmarks/lesion_speed.py [--threads 2] [--device cpu|cuda] [--model PT]
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

from serialct.config import defaults
from serialct.lesion.infer import load_model, segment_lesions

ROOT = Path(__file__).resolve().parents[1]
SIZE = 512
PIXEL_MM = 0.7


def cpu_workflow(model_path: Path, n_slices: int) -> float:
    """Seconds per slice of segment_lesions on a 512x512 x n_slices volume."""
    from serialct.phantom import draw_phantom

    p = draw_phantom(np.random.default_rng(0), shape=(n_slices, SIZE, SIZE), lesion_percent=5.0)
    ct = sitk.GetImageFromArray(p.hu)
    ct.SetSpacing([float(s) for s in p.spacing[::-1]])
    lung = sitk.GetImageFromArray(np.ones(p.hu.shape, np.uint8))
    lung.CopyInformation(ct)
    config = copy.deepcopy(defaults())
    config["device"] = "cpu"
    segment_lesions(ct, lung, model_path, config)  # warm-up + model cache
    t0 = time.perf_counter()
    segment_lesions(ct, lung, model_path, config)
    return (time.perf_counter() - t0) / n_slices


def raw_net(
    model: torch.nn.Module, device: torch.device, batch: int, dtype: torch.dtype | None,
    channels_last: bool, reps: int,
) -> float:  # fmt: skip
    """Slices per second of model(x) for x of shape (batch, 1, 512, 512)."""
    x = torch.rand(batch, 1, SIZE, SIZE, device=device)
    m = model
    if channels_last:
        m = m.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    ctx = (
        torch.autocast(device_type=device.type, dtype=dtype)
        if dtype is not None
        else torch.autocast(device_type=device.type, enabled=False)
    )
    with torch.inference_mode(), ctx:
        for _ in range(2):
            torch.softmax(m(x), 1)
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(reps):
            torch.softmax(m(x), 1)
        if device.type == "cuda":
            torch.cuda.synchronize()
    return batch * reps / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(ROOT / "resources/models/covid_lesion_net.pt"))
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--slices", type=int, default=16, help="CPU workflow volume depth")
    args = ap.parse_args()
    model_path = Path(args.model)
    if args.device == "cpu":
        torch.set_num_threads(args.threads)
        print(f"CPU, {torch.get_num_threads()} threads, torch {torch.__version__}")
        s = cpu_workflow(model_path, args.slices)
        print(f"workflow segment_lesions, {SIZE}x{SIZE} at {PIXEL_MM} mm: {s:.3f} s/slice")
        model, _ = load_model(model_path, torch.device("cpu"))
        sps = raw_net(model, torch.device("cpu"), 8, None, False, reps=2)
        print(f"raw net at native {SIZE}x{SIZE}, batch 8, fp32: {1 / sps:.3f} s/slice")
        return
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device visible to torch; run this part on a GPU machine")
    dev = torch.device("cuda")
    torch.backends.cudnn.benchmark = True
    model, _ = load_model(model_path, dev)
    print(f"GPU {torch.cuda.get_device_name(0)}, torch {torch.__version__}")
    print("batch precision channels_last slices/s")
    for batch in (1, 8, 32, 64):
        for name, dtype in (("fp32", None), ("bf16", torch.bfloat16), ("fp16", torch.float16)):
            for cl in (False, True):
                sps = raw_net(model, dev, batch, dtype, cl, reps=20)
                print(f"{batch:5d} {name:9s} {cl!s:13s} {sps:10.1f}")


if __name__ == "__main__":
    main()
