"""``POST /v1/audio/transcriptions``: speech to text with Whisper, OpenAI's upload and answer.

The upload is a PCM WAV file (any rate, any channel count; the command line's ``attentive
transcribe`` reads the same), held in memory and never written to disk. ``response_format`` is
``json`` (``{"text": ...}``) or ``text``; decoding is greedy, as ``attentive transcribe``. The
clip's 30 s windows join the model's running engine batch beside other requests' windows
(``serve/encoder_decoder.py``); the text is the one ``transcribe_audio`` gives.
"""

from __future__ import annotations

import asyncio
import io
import math
from typing import get_args

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse

from ...audio import read_wav
from ...decode.transcriber import audio_features, transcript, transcription_config
from ..errors import bad_request
from ..openapi import DECODES, POST_FORM, answer, errors, form_body
from ..responses import Transcription
from ..schemas import TranscriptionForm
from .common import form_text, read_form, state_of, upload

router = APIRouter(tags=["audio"])
ENDPOINT = "/v1/audio/transcriptions"
FORMATS = get_args(TranscriptionForm.model_fields["response_format"].annotation)  # json, text
FIELDS = tuple(TranscriptionForm.model_fields)  # file, model, response_format, language, prompt, temperature


@router.post(
    ENDPOINT,
    openapi_extra=form_body(TranscriptionForm, "audio/wav, audio/x-wav, application/octet-stream"),
    responses={
        **answer(
            Transcription,
            "The transcript: JSON, or with response_format text the bare text",
            **{"text/plain": {"schema": {"type": "string"}}},
        ),
        **errors(*POST_FORM, *DECODES),
    },
)
async def transcriptions(request: Request):
    """Speech to text with a Whisper model: a WAV upload, greedy decoding."""
    state = state_of(request)
    form = await read_form(request, FIELDS)
    served = state.models.get(form_text(form, "model", required=True), ENDPOINT)
    response_format = form_text(form, "response_format", "json")
    if response_format not in FORMATS:
        raise bad_request(
            f"response_format {response_format!r} is not supported; use one of {', '.join(FORMATS)}",
            param="response_format",
        )
    _check_language(served, form_text(form, "language"))
    if form_text(form, "prompt"):
        raise bad_request("prompt is not supported for transcription", param="prompt")
    temperature = form_text(form, "temperature", "0")
    try:
        if float(temperature) != 0.0:
            raise ValueError
    except ValueError:
        raise bad_request(
            f"temperature {temperature!r} is not supported; decoding is greedy (0)", param="temperature"
        ) from None
    data = await upload(form)
    try:
        audio, rate = read_wav(io.BytesIO(data))
    except ValueError as err:
        raise bad_request(f"{err} (only WAV uploads are read)", param="file") from None
    if rate <= 0 or len(audio) == 0:
        raise bad_request("the uploaded WAV file holds no audio", param="file")
    seconds = len(audio) / rate
    limit = state.settings.max_audio_seconds
    if seconds > limit:
        raise bad_request(
            f"the audio is {seconds:.1f} s long; this server transcribes at most {limit:g} s",
            param="file",
            code="audio_too_long",
        )
    features = await asyncio.to_thread(audio_features, served.model, audio, rate)  # (B, M, F), off the event loop
    config = transcription_config(served.model)
    sequences = await state.schedulers[served.name].run([(window, config) for window in features])
    state.metrics.generated_tokens.labels(served.name).inc(sum(len(s.tokens) for s in sequences))
    text = transcript(served.tokenizer, [s.tokens for s in sequences])
    if response_format == "text":
        return PlainTextResponse(text)
    return {"text": text, "usage": {"type": "duration", "seconds": math.ceil(seconds)}}


def _check_language(served, language: str | None) -> None:
    """A language other than the one the model was loaded for is refused, not silently ignored."""
    if language is None:
        return
    start = list(served.model.config.start_ids)
    token = served.tokenizer.special_tokens().get(f"<|{language}|>")
    english_only = len(start) == 2  # <|startoftranscript|> <|notimestamps|>: no language token
    if (english_only and language != "en") or (not english_only and token not in start):
        raise bad_request(
            f"language {language!r}: this model was loaded to transcribe "
            f"{'English only' if english_only else 'another language'}",
            param="language",
        )
