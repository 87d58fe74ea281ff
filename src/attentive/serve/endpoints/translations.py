"""``POST /v1/translations/text`` (attentive's own): sentences through a trained translation run.

Request ``{"model", "input": "..." | ["...", ...], "beam": 4, "alpha": 0.6, "max_len_b": 50}``
(search settings default to the run's own, saved beside its weights, else beam 4); answer
``{"object": "list", "data": [{"object": "translation", "index", "text"}], "usage"}`` in input
order. An empty sentence gets an empty translation; one longer than the model's positions is
refused (the command line would cut it), and so is a beam wider than the rows a step decodes
(``--max-batch``). Each sentence joins the model's running engine batch beside other requests'
sentences (``serve/encoder_decoder.py``), with the tokens ``Translator.translate_ids`` gives.
"""

from __future__ import annotations

from fastapi import APIRouter, Request

from ..errors import bad_request, check_count
from ..openapi import DECODES, POST_JSON, answer, errors, json_body
from ..responses import TranslationList
from ..schemas import TranslationRequest, parse
from .common import read_json, state_of

router = APIRouter(tags=["translation"])
ENDPOINT = "/v1/translations/text"


@router.post(
    ENDPOINT,
    openapi_extra=json_body(TranslationRequest),
    responses={**answer(TranslationList, "One translation per input, in input order"), **errors(*POST_JSON, *DECODES)},
)
async def translations(request: Request):
    """Sentences through a trained translation model (attentive's own endpoint); search settings
    default to the run's own."""
    state = state_of(request)
    body = parse(TranslationRequest, await read_json(request))
    served = state.models.get(body.model, ENDPOINT)
    texts = body.texts()
    check_count(len(texts), state.settings.max_inputs, "inputs", "input")
    translator = served.translator
    sources = translator.source_tokenizer.encode_batch([t.strip() for t in texts])
    limit = translator.max_source_len
    for i, ids in enumerate(sources):
        if len(ids) > limit:
            raise bad_request(f"input.{i} has {len(ids)} tokens; this model reads at most {limit}", param="input")
    config = translator.search_config(body.beam, body.alpha, body.max_len_b)
    rows = state.settings.max_batch
    if config.beam_size > rows:
        raise bad_request(
            f"beam {config.beam_size} needs {config.beam_size} rows; this server decodes at most {rows} "
            f"together (--max-batch)",
            param="beam",
        )
    live = [i for i, ids in enumerate(sources) if ids]  # an empty sentence: an empty translation
    sequences = await state.schedulers[served.name].run([(sources[i], config) for i in live])
    outputs = [[] for _ in sources]
    for i, sequence in zip(live, sequences):
        outputs[i] = sequence.tokens
    read, written = sum(map(len, sources)), sum(map(len, outputs))
    state.metrics.prompt_tokens.labels(served.name).inc(read)
    state.metrics.generated_tokens.labels(served.name).inc(written)
    data = [{"object": "translation", "index": i, "text": translator.text(ids)} for i, ids in enumerate(outputs)]
    return {
        "object": "list",
        "model": served.name,
        "data": data,
        "usage": {"prompt_tokens": read, "completion_tokens": written, "total_tokens": read + written},
    }
