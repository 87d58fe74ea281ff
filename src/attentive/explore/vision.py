"""Vision Transformers (``VisionTransformer``, e.g. a vit-mnist run): where the class token looks.

``analyze(image_bytes)`` reads an uploaded (or drawn) image the way the model's training data
was made (28 x 28 grey digits: MNIST's own framing, as ``attentive classify`` does; other sizes:
resized), encodes it under the attention tap, and adds to the views the class token's attention
over the patch grid in every layer (mean over heads, and each head) and the attention rollout
through all layers (``viz.rollout``), with the model's prediction.

Dimension names: C channels, H x W pixels, G x G patch grid, T = G*G + 1 tokens, L layers.
"""

from __future__ import annotations

import io
import os
import tempfile

import torch

from ..viz.rollout import attention_rollout
from .subject import Analysis, Primary, Subject
from .weights import as_b64

MAX_IMAGE_BYTES = 8 * 1024 * 1024
TOP_CLASSES = 10


class VisionModel(Subject):
    family = "vision"
    input_kind = "image"
    views = ("head", "model", "vision", "ideas")
    labels = {"encoder": "self-attention over patches"}

    def info(self) -> dict:
        c = self.config
        info = super().info()
        info.update(
            image_size=c.image_size,
            patch_size=c.patch_size,
            channels=c.in_channels,
            grid=c.grid_size,
            classes=c.num_classes,
            max_bytes=MAX_IMAGE_BYTES,
        )
        return info

    @property
    def max_tokens(self) -> int:
        return self.config.num_tokens

    def read_image(self, data: bytes) -> torch.Tensor:
        """Image file bytes -> pixels ``(C, H, W)`` in 0..1, as the model expects them."""
        if not data:
            raise ValueError("the image is empty: upload a PNG or JPEG, or draw a digit")
        if len(data) > MAX_IMAGE_BYTES:
            raise ValueError(f"the image is {len(data):,} bytes; the explorer takes at most {MAX_IMAGE_BYTES:,}")
        c = self.config
        if (c.in_channels, c.image_size) == (1, 28):
            return _mnist_like(data)
        from PIL import Image, UnidentifiedImageError

        try:
            img = Image.open(io.BytesIO(data))
            img.load()
        except (UnidentifiedImageError, OSError):
            raise ValueError("the file is not an image (PNG, JPEG, ... expected)") from None
        img = img.convert("L" if c.in_channels == 1 else "RGB").resize((c.image_size, c.image_size))
        pixels = torch.tensor(list(img.getdata()), dtype=torch.float32) / 255.0  # (H*W*C,)
        return pixels.view(c.image_size, c.image_size, c.in_channels).permute(2, 0, 1).contiguous()

    def _analyze(self, data: bytes, key: str) -> Analysis:
        c, model = self.config, self.model
        image = self.read_image(data)[None].to(self.device)  # (1, C, H, W)
        g = c.grid_size
        tokens = ["[CLS]"] + [f"p{r},{col}" for r in range(g) for col in range(g)]
        stores = self.stores_for({("encoder", "self"): (tokens, tokens)})
        with self.tapped(stores), self.stream_tap(model.encoder) as stream:
            out = model.encode(image)
        probs = model.head(out.hidden[:, 0]).float().softmax(-1)[0]  # (K,)
        store = stores[("encoder", "self")]
        layers = torch.stack(store.dense)  # (L, H, T, T)
        cls_rows = layers[:, :, 0, 1:]  # (L, H, N): the class token's weights on the patches
        rollout = attention_rollout([w[None] for w in layers])[0, 0, 1:]  # (N,)
        values, index = probs.topk(min(TOP_CLASSES, probs.numel()))
        names = [str(i) for i in range(c.num_classes)]
        extra = {
            "image": {"channels": c.in_channels, "size": c.image_size, "pixels": as_b64((image[0] * 255).round())},
            "grid": g,
            "patch": c.patch_size,
            "prediction": [{"class": names[i], "p": p} for i, p in zip(index.tolist(), values.tolist())],
            "cls_mean": cls_rows.mean(dim=1).tolist(),  # (L, N)
            "cls_heads": cls_rows.tolist(),  # (L, H, N)
            "rollout": rollout.tolist(),  # (N,)
        }
        primary = Primary(
            image, tokens, model.encoder, "encoder", None, lambda x, key_mask: model.encode(x), is_text=False
        )
        return Analysis(key, self.family, {s.name: s for s in stores.values()}, primary, extra, streams=stream.layers)


def _mnist_like(data: bytes) -> torch.Tensor:
    """A digit image framed as MNIST was (``data.images.load_image_file``): ``(1, 28, 28)``."""
    from ..data.images import load_image_file

    fd, path = tempfile.mkstemp(suffix=".img")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        try:
            return load_image_file(path)
        except ValueError:
            raise ValueError("the file is not an image (PNG, JPEG, ... expected)") from None
    finally:
        os.unlink(path)
