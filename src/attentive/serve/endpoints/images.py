"""``POST /v1/classifications/image`` (attentive's own): an image upload through a ViT run.

Multipart fields ``file`` (PNG, JPEG, ... held in memory) and ``model``; the answer names the
most likely class and every class's probability. A 28x28 grey model (the ``vit-mnist`` recipe)
reads the image as ``attentive classify`` does (ink cropped, scaled and centred as MNIST was
made); another shape is resized to the model's size and channels.
"""

from __future__ import annotations

import numpy as np
import torch
from fastapi import APIRouter, Request

from ...data.images import IMAGE_SIZE, load_image_bytes, open_image_bytes
from ..errors import bad_request
from ..openapi import POST_FORM, RUNS_ONCE, answer, errors, form_body
from ..responses import ImageClassification
from ..schemas import ImageClassificationForm
from .common import form_text, read_form, state_of, upload

router = APIRouter(tags=["images"])
ENDPOINT = "/v1/classifications/image"
FIELDS = tuple(ImageClassificationForm.model_fields)  # file, model


@router.post(
    ENDPOINT,
    openapi_extra=form_body(ImageClassificationForm, "image/*, application/octet-stream"),
    responses={
        **answer(ImageClassification, "The most likely class and every class's probability"),
        **errors(*POST_FORM, *RUNS_ONCE),
    },
)
async def classify_image(request: Request):
    """An uploaded image through a ViT model (attentive's own endpoint)."""
    state = state_of(request)
    form = await read_form(request, FIELDS)
    served = state.models.get(form_text(form, "model", required=True), ENDPOINT)
    data = await upload(form)
    try:
        image = _pixels(data, served.model.config, state.settings.max_image_pixels)  # (C, H, W) in 0..1
    except ValueError as err:
        raise bad_request(f"file: {err}", param="file") from None
    probs = await state.workers[served.name].run(_classify, served.model, image)
    best = int(probs.argmax())
    return {
        "object": "classification",
        "model": served.name,
        "label": str(best),
        "index": best,
        "probability": float(probs[best]),
        "probabilities": {str(k): float(p) for k, p in enumerate(probs)},
    }


def _pixels(data: bytes, config, max_pixels: int) -> torch.Tensor:
    if (config.in_channels, config.image_size) == (1, IMAGE_SIZE):
        return load_image_bytes(data, max_pixels=max_pixels)
    from PIL import Image

    img = open_image_bytes(data, max_pixels).convert("L" if config.in_channels == 1 else "RGB")
    img = img.resize((config.image_size, config.image_size), Image.Resampling.BILINEAR)
    array = np.asarray(img, dtype=np.float32) / 255.0  # (H, W) or (H, W, 3)
    return torch.from_numpy(array[None] if array.ndim == 2 else array.transpose(2, 0, 1).copy())


def _classify(model, image: torch.Tensor) -> torch.Tensor:
    param = next(model.parameters())
    logits = model(image[None].to(param.device, param.dtype))  # (1, K)
    return logits.float().softmax(-1)[0].cpu()
