"""Speed of COVID-Lesion Net inference at 512x512.

CPU (default): seconds per 512x512 slice with N threads (default 2), three ways:
  * workflow path: ``segment_lesions`` on a 512x512 phantom (0.7 mm pixels, resampled to the
    model's training spacing, lung everywhere), wall seconds / slices;
  * slice images: one 512x512 8-bit image through ``segment-slices``' path with the checkpoint's
    slice settings (for the default model: 8 passes of test-time augmentation);
  * raw net: forward passes on 512x512 slices at native size, batch 8.
Sweep (``--device cuda``, or ``--sweep`` on CPU): slices/s of the raw net at ``--size`` (512)
for several batch sizes and precisions (fp32, bf16 and fp16 autocast), with and without
channels_last, under ``torch.inference_mode()`` (and fp32 under ``torch.no_grad()`` for
comparison). On CPU the sweep is a smoke test (``--size 64 --batches 1,2 --reps 1``): the numbers
that matter come from a GPU node.

Usage: python benchmarks/lesion_speed.py [--threads 2] [--device cpu|cuda] [--model PT]
    [--sweep] [--size 512] [--batches 1,8,32,64] [--reps 20]
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


def cpu_slice_images(model_path: Path, reps: int) -> float:
    """Seconds per 512x512 8-bit image through ``segment-slices``' path with its defaults (the
    checkpoint's slice settings: window estimated, test-time augmentation, pixel size)."""
    from serialct.lesion.slices import hu_to_window, segment_slice_array

    p = draw_phantom_slice()
    pixels = hu_to_window(p, -400.0, 1500.0)
    model, meta = load_model(model_path, torch.device("cpu"))
    config = defaults()
    segment_slice_array(pixels, model, meta, torch.device("cpu"), config, None, None)  # warm-up
    start = time.perf_counter()
    for _ in range(reps):
        segment_slice_array(pixels, model, meta, torch.device("cpu"), config, None, None)
    return (time.perf_counter() - start) / reps


def draw_phantom_slice() -> np.ndarray:
    """The middle slice (HU) of a 512x512 phantom."""
    from serialct.phantom import draw_phantom

    p = draw_phantom(np.random.default_rng(0), shape=(8, SIZE, SIZE), lesion_percent=5.0)
    return p.hu[4].astype(np.float32)


def raw_net(
    model: torch.nn.Module, device: torch.device, batch: int, dtype: torch.dtype | None,
    channels_last: bool, reps: int, size: int = SIZE, inference_mode: bool = True,
) -> float:  # fmt: skip
    """Slices per second of model(x) for x of shape (batch, 1, size, size)."""
    x = torch.rand(batch, 1, size, size, device=device)
    m = model
    if channels_last:
        m = m.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    ctx = (
        torch.autocast(device_type=device.type, dtype=dtype)
        if dtype is not None
        else torch.autocast(device_type=device.type, enabled=False)
    )
    grad_off = torch.inference_mode() if inference_mode else torch.no_grad()
    with grad_off, ctx:
        for _ in range(2):
            torch.softmax(m(x), 1)
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(reps):
            torch.softmax(m(x), 1)
        if device.type == "cuda":
            torch.cuda.synchronize()
    elapsed = time.perf_counter() - t0
    if channels_last:  # Module.to is in place: back to the default layout for the next cell
        m.to(memory_format=torch.contiguous_format)
    return batch * reps / elapsed


def sweep(
    model: torch.nn.Module, device: torch.device, size: int, batches: list[int], reps: int
) -> None:
    """Print slices/s for every batch size x precision x memory format (+ fp32 no_grad)."""
    print(f"{size}x{size}, {reps} timed passes each")
    print("batch precision channels_last grad_mode slices/s")
    precisions = (("fp32", None), ("bf16", torch.bfloat16), ("fp16", torch.float16))
    for batch in batches:
        for name, dtype in precisions:
            for cl in (False, True):
                try:
                    sps = raw_net(model, device, batch, dtype, cl, reps, size)
                except RuntimeError as exc:  # e.g. a precision this device lacks
                    print(f"{batch:5d} {name:9s} {cl!s:13s} inference  unsupported ({exc})")
                    continue
                print(f"{batch:5d} {name:9s} {cl!s:13s} inference {sps:10.1f}", flush=True)
        sps = raw_net(model, device, batch, None, False, reps, size, inference_mode=False)
        print(f"{batch:5d} {'fp32':9s} {'False':13s} no_grad   {sps:10.1f}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(ROOT / "resources/models/covid_lesion_net.pt"))
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--slices", type=int, default=16, help="CPU workflow volume depth")
    ap.add_argument("--sweep", action="store_true", help="batch/precision sweep on the CPU too")
    ap.add_argument("--size", type=int, default=SIZE, help="sweep slice size (multiple of 8)")
    ap.add_argument("--batches", default="1,8,32,64", help="sweep batch sizes")
    ap.add_argument("--reps", type=int, default=20, help="timed passes per sweep cell")
    args = ap.parse_args()
    model_path = Path(args.model)
    batches = [int(b) for b in args.batches.split(",")]
    if args.device == "cpu":
        torch.set_num_threads(args.threads)
        print(f"CPU, {torch.get_num_threads()} threads, torch {torch.__version__}")
        model, _ = load_model(model_path, torch.device("cpu"))
        if args.sweep:
            sweep(model, torch.device("cpu"), args.size, batches, args.reps)
            return
        s = cpu_workflow(model_path, args.slices)
        print(f"workflow segment_lesions, {SIZE}x{SIZE} at {PIXEL_MM} mm: {s:.3f} s/slice")
        s = cpu_slice_images(model_path, reps=5)
        print(f"segment-slices (checkpoint's slice settings), one {SIZE}x{SIZE} image: {s:.3f} s")
        sps = raw_net(model, torch.device("cpu"), 8, None, False, reps=2)
        print(f"raw net at native {SIZE}x{SIZE}, batch 8, fp32: {1 / sps:.3f} s/slice")
        return
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device visible to torch; run this part on a GPU machine")
    dev = torch.device("cuda")
    torch.backends.cudnn.benchmark = True
    model, _ = load_model(model_path, dev)
    print(f"GPU {torch.cuda.get_device_name(0)}, torch {torch.__version__}")
    sweep(model, dev, args.size, batches, args.reps)


if __name__ == "__main__":
    main()
