"""``POST /v1/embeddings``: sentence vectors from an encoder (MiniLM), as floats or base64.

``encoding_format: "base64"`` is the little-endian float32 bytes of each vector, base64-encoded:
what the official ``openai`` client asks for by default when numpy is installed, and decodes
back to the same numbers as ``"float"``.
"""

from __future__ import annotations

import base64

import numpy as np
from fastapi import APIRouter, Request

from ...models.encoder import embed_texts
from ..errors import bad_request, check_count
from ..openapi import POST_JSON, RUNS_ONCE, answer, errors, json_body
from ..responses import EmbeddingList
from ..schemas import EmbeddingRequest, parse
from .common import read_json, state_of

router = APIRouter(tags=["embeddings"])
ENDPOINT = "/v1/embeddings"


@router.post(
    ENDPOINT,
    openapi_extra=json_body(EmbeddingRequest),
    responses={**answer(EmbeddingList, "One vector per input, in input order"), **errors(*POST_JSON, *RUNS_ONCE)},
)
async def embeddings(request: Request):
    """Sentence vectors of ``input`` from an encoder model, as numbers or base64."""
    state = state_of(request)
    body = parse(EmbeddingRequest, await read_json(request))
    served = state.models.get(body.model, ENDPOINT)
    texts = body.texts()
    check_count(len(texts), state.settings.max_inputs, "inputs", "input")
    width = served.model.config.d_model
    if body.dimensions is not None and body.dimensions != width:
        raise bad_request(
            f"dimensions={body.dimensions}: this model's vectors have {width} dimensions (it cannot shorten them)",
            param="dimensions",
        )
    vectors, tokens = await state.workers[served.name].run(_embed, served, texts)
    state.metrics.prompt_tokens.labels(served.name).inc(tokens)
    data = [
        {"object": "embedding", "index": i, "embedding": _encode(v, body.encoding_format)}
        for i, v in enumerate(vectors)
    ]
    return {
        "object": "list",
        "data": data,
        "model": served.name,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def _embed(served, texts: list[str]):
    """(vectors (N, D) as float32 numpy, tokens read) in the worker thread."""
    limit = served.model.config.max_len
    tokens = sum(min(len(ids), limit) for ids in served.tokenizer.encode_batch(texts, add_special_tokens=True))
    return embed_texts(served.model, served.tokenizer, texts).float().numpy(), tokens


def _encode(vector: np.ndarray, encoding_format: str):
    if encoding_format == "base64":
        return base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
    return vector.tolist()
