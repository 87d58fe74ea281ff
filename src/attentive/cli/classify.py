"""``attentive classify``: the digit in each image file, with probabilities and an attention picture."""

from __future__ import annotations

from pathlib import Path

import torch

from .common import add_device, add_model, load_model


def _attention_paths(target: str, images: list[Path]) -> list[Path]:
    """One image: ``target`` is the PNG. Several: ``target`` is a folder of ``<stem>-attention.png``."""
    if len(images) == 1:
        return [Path(target)]
    return [Path(target) / f"{p.stem}-attention.png" for p in images]


def run(args) -> int:
    from ..data.images import load_image_file
    from ..models.vit import VisionTransformer

    if not args.images:
        raise ValueError("give at least one image file to classify")
    model = load_model(args, "vit").model
    device = next(model.parameters()).device
    if not isinstance(model, VisionTransformer):
        raise ValueError(f"{args.model} holds a {type(model).__name__}, not a Vision Transformer")
    cfg = model.config
    if (cfg.in_channels, cfg.image_size) != (1, 28):
        raise ValueError(
            f"classify reads digits as 28x28 grey images; this model expects {cfg.in_channels} channel(s) "
            f"of {cfg.image_size}x{cfg.image_size}"
        )
    paths = [Path(p) for p in args.images]
    images = torch.stack([load_image_file(p) for p in paths]).to(device)  # (B, 1, 28, 28); bad files fail here

    with torch.no_grad():
        out = model.encode(images, need_weights=args.attention is not None)
        probs = model.head(out.hidden[:, 0]).float().softmax(-1).cpu()  # (B, K)
    for path, p in zip(paths, probs):
        digit = int(p.argmax())
        table = " ".join(f"{k}:{v:.3f}" for k, v in enumerate(p.tolist()))
        print(f"{path}: {digit} (p={p[digit]:.3f})  {table}")

    if args.attention is not None:
        from ..viz.rollout import class_token_map, save_attention_overlay

        maps = class_token_map(out.self_attentions, args.method)  # (B, G, G)
        for path, image, heat, p, png in zip(paths, images, maps, probs, _attention_paths(args.attention, paths)):
            title = f"{path.name}: {int(p.argmax())} ({args.method})"
            save_attention_overlay(image[0], heat, png, title=title)
            print(f"attention ({args.method}) -> {png}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("classify", help="classify digit images (PNG/JPEG, any size) with a Vision Transformer")
    add_model(p, "vision transformer (e.g. the run folder runs/vit-mnist)", required=True)
    p.add_argument("images", nargs="*", metavar="IMAGE", help="image files; converted to 28x28 grayscale")
    p.add_argument(
        "--attention",
        metavar="PATH",
        help="save the attention over the image as a PNG (a folder of PNGs for several images)",
    )
    p.add_argument(
        "--method",
        choices=("rollout", "last"),
        default="rollout",
        help="attention rollout over all layers, or the class token's last-layer attention",
    )
    add_device(p)
    p.set_defaults(func=run)
