"""U-Net training and inference images per second (the classic U-Net of the paper, or an smp one).

    python benchmarks/unet_speed.py [--device cpu|cuda] [--batch-size 16] [--resolution 128] [--arch classic|smp]
                                    [--encoder resnet34] [--width 64] [--steps 3]

Where the device computes bf16 fast (``distributed.bf16_is_fast``: Ampere+ GPUs, CPUs with AVX-512
BF16 or AMX) it measures fp32 and bf16 autocast, else fp32 only, at the given batch (on a GPU use
--batch-size 128, the paper's), each in the default NCHW layout and in channels_last
(``unet.channels_last``).
Inference is the paper's: one image at a time, shorter side 128, resized back.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from saliency import distributed
from saliency.segmentation.model import UnetSpec, build_unet
from saliency.segmentation.predict import predict_image
from saliency.segmentation.train import segmentation_loss


def train_speed(model: torch.nn.Module, batch: int, resolution: int, device: torch.device, precision: str,
                steps: int, channels_last: bool = False) -> float:
    """Training images/s; ``channels_last`` puts the model and the batch in NHWC, as ``unet.channels_last``."""
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.005)
    images = (torch.rand(batch, 3, resolution, resolution, device=device) * 2 - 1).contiguous(memory_format=memory_format)
    masks = (torch.rand(batch, resolution, resolution, device=device) > 0.7).long()
    model.train()
    for step in range(steps + 1):
        if step == 1:  # the first step warms up kernels and allocators
            synchronize(device)
            start = time.perf_counter()
        with distributed.autocast(device, precision):
            loss = segmentation_loss(model(images), masks, 10.0)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    synchronize(device)
    return steps * batch / (time.perf_counter() - start)


def inference_speed(model: torch.nn.Module, device: torch.device, images: int) -> float:
    model.eval()
    photo = np.random.default_rng(0).integers(0, 255, (300, 400, 3), dtype=np.uint8)  # ECSSD's typical size
    predict_image(model, photo, device)
    synchronize(device)
    start = time.perf_counter()
    for _ in range(images):
        predict_image(model, photo, device)
    synchronize(device)
    return images / (time.perf_counter() - start)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--resolution", type=int, default=128)
    parser.add_argument("--arch", default="classic", choices=["classic", "smp"])
    parser.add_argument("--encoder", default="resnet34", help="with --arch smp")
    parser.add_argument("--width", type=int, default=64, help="classic U-Net's first width (the quickstart: 16)")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--images", type=int, default=20)
    args = parser.parse_args()
    device = distributed.resolve_device(args.device)
    spec = UnetSpec(args.arch, args.encoder, width=args.width)
    model = build_unet(spec).to(device)
    for precision in (distributed.PRECISIONS if distributed.bf16_is_fast(device) else ("fp32",)):
        for layout, channels_last in (("NCHW", False), ("channels_last", True)):
            rate = train_speed(model, args.batch_size, args.resolution, device, precision, args.steps, channels_last)
            print(f"{device.type} {precision} {layout} {spec.describe()} train batch {args.batch_size} "
                  f"at {args.resolution} px: {rate:.1f} images/s")
    print(f"{device.type} {spec.describe()} inference (300x400 photo, shorter side 128): "
          f"{inference_speed(model, device, args.images):.1f} images/s")


if __name__ == "__main__":
    main()
