"""What quantisation costs in quality: SmolLM2 perplexity, Whisper transcripts, translation BLEU.

* ``--part perplexity``: SmolLM2-135M on the Tiny Shakespeare validation text (the last 10% of
  the bundled file, ``split_train_val``), consecutive blocks of ``--block-size`` tokens. fp32 is
  the GGUF dequantised; ``int8`` / ``int4`` keep the file's Q4_1 / Q8_0 blocks (so the weights
  are the fp32 weights, and only the activations' rounding can differ); ``requantised`` rows
  quantise the dequantised fp32 weights again (int8 per channel, int4 in groups of 32): what the
  quantisers cost on their own. Activations as ``optimize`` chooses (int8 where AVX512-VNNI
  runs), and float for comparison.
* ``--part whisper``: Whisper tiny.en on espeak-ng clips (the benchmark's three and the test
  clip), fp32 and int8: the transcripts, and the words that differ.
* ``--part bleu --checkpoint runs/mt5``: a translation checkpoint (``attentive train
  --max-minutes 5 --out runs/mt5``) on Multi30k test_2016_flickr, greedy and beam 4, fp32 and
  int8 (and int4), sacreBLEU.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/quality_cpu_inference.py --part perplexity
    OMP_WAIT_POLICY=PASSIVE python benchmarks/quality_cpu_inference.py --part whisper
    OMP_WAIT_POLICY=PASSIVE python benchmarks/quality_cpu_inference.py --part bleu --checkpoint runs/mt5
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import os
import time
from pathlib import Path

import torch

import common
from attentive.nn.inference import optimize
from attentive.nn.kernels import kernel_status


def write(out: Path, name: str, title: str, header: list[str], rows: list[list], notes: list[str]) -> None:
    lines = [
        f"### {title}",
        "",
        f"{datetime.date.today().isoformat()}; torch {torch.__version__}; "
        f"{torch.get_num_threads()} threads; {kernel_status()}",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    lines += [""] + [f"- {n}" for n in notes]
    text = "\n".join(lines) + "\n"
    (out / f"{name}.md").write_text(text)
    (out / f"{name}.json").write_text(
        json.dumps(
            {**common.provenance("cpu"), "title": title, "header": header, "rows": rows, "notes": notes},
            indent=1,
            default=str,
        )
    )
    print(text, flush=True)


def perplexity_part(args) -> None:
    from attentive.data.lm import load_tinyshakespeare, split_train_val
    from attentive.evaluate.perplexity import perplexity
    from attentive.interop.gguf import load_gguf_llama
    from attentive.interop.locate import smollm2_gguf
    from attentive.interop.pretrained import pretrained_from_gguf

    path = smollm2_gguf(required=True)
    gg = load_gguf_llama(path, keep_blocks=True)
    _, text = split_train_val(load_tinyshakespeare())
    base = pretrained_from_gguf(gg, str(path))
    tokens = base.tokenizer.encode(text)
    if args.max_tokens:
        tokens = tokens[: args.max_tokens]
    variants = [
        ("fp32 (GGUF dequantised)", None, False, None),
        ("int8, GGUF blocks kept", "int8", True, None),
        ("int4, GGUF blocks kept", "int4", True, None),
        ("int8, GGUF blocks kept, float activations", "int8", True, "float"),
        ("int8 requantised (per channel)", "int8", False, None),
        ("int4 requantised (groups of 32)", "int4", False, None),
        ("int8 requantised, float activations", "int8", False, "float"),
        ("int4 requantised, float activations", "int4", False, "float"),
    ]
    rows, reference = [], None
    for name, quantize, keep, act in variants:
        model = copy.deepcopy(base.model)
        if quantize:
            optimize(model, quantize, blocks=base.blocks if keep else None, activations=act)
        acts = sorted({m.act for m in model.modules() if hasattr(m, "act")}) or ["float"]
        t0 = time.perf_counter()
        result = perplexity(model, tokens, block_size=args.block_size, batch_size=args.batch_size)
        seconds = time.perf_counter() - t0
        reference = reference or result.perplexity
        change = (result.perplexity / reference - 1) * 100
        rows.append([name, "/".join(acts), f"{result.perplexity:.4f}", f"{change:+.2f}%", f"{seconds:.0f}"])
        print(rows[-1], flush=True)
        del model
    write(
        args.out,
        "quality_perplexity",
        f"SmolLM2-135M perplexity, Tiny Shakespeare validation text "
        f"({len(tokens):,} tokens, blocks of {args.block_size})",
        ["weights", "activations", "perplexity", "vs fp32", "seconds"],
        rows,
        [
            "int8 / int4 with the GGUF blocks kept compute with exactly the fp32 model's weights (Q4_1 / Q8_0 "
            "values, scales and minimums); their difference is the activations' rounding alone",
            "requantised: the dequantised weights quantised again by attentive's own quantisers",
        ],
    )


def whisper_part(args) -> None:
    import shutil
    import tempfile

    from attentive import from_pretrained
    from attentive.decode.transcriber import greedy_transcribe
    from attentive.interop.locate import whisper_ct2_dir

    texts = {"test clip": "Hello world. This is a test of the speech recognition system.", **common.CLIP_TEXTS}
    folder = whisper_ct2_dir(required=True)
    models = {"fp32": from_pretrained(folder)}
    models["int8"] = from_pretrained(folder, quantize="int8")
    models["int8, float activations"] = copy.deepcopy(models["fp32"])
    optimize(models["int8, float activations"].model, "int8", activations="float")
    models["int4"] = from_pretrained(folder, quantize="int4")
    tmp = Path(tempfile.mkdtemp())
    rows, notes = [], []
    try:
        for clip, (features, _) in common.speech_clips(tmp, texts).items():
            features = features[None]
            out = {}
            for name, pre in models.items():
                with torch.no_grad():
                    out[name] = pre.tokenizer.decode(greedy_transcribe(pre.model, features)[0]).strip()
            for name, transcript in out.items():
                rows.append([clip, name, common.word_differences(transcript, out["fp32"]), transcript])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    write(
        args.out,
        "quality_whisper",
        "Whisper tiny.en transcripts of espeak-ng clips, fp32 / int8 / int4",
        ["clip", "weights", "words differing from fp32", "transcript"],
        rows,
        notes,
    )


def bleu_part(args) -> None:
    from attentive.data.parallel import load_multi30k
    from attentive.decode.search import SearchConfig
    from attentive.decode.translator import Translator
    from attentive.evaluate.translation import evaluate_translator

    if not args.checkpoint:
        raise SystemExit("--part bleu needs --checkpoint (e.g. attentive train --max-minutes 5 --out runs/mt5)")
    base = Translator.from_checkpoint(args.checkpoint)
    pairs = load_multi30k("test_2016_flickr")
    sources, references = [s for s, _ in pairs], [t for _, t in pairs]
    rows, scores = [], {}
    for name, quantize in (("fp32", None), ("fp32 panels", "fp32"), ("int8", "int8"), ("int4", "int4")):
        model = copy.deepcopy(base.model)
        if quantize:
            optimize(model, None if quantize == "fp32" else quantize)
        translator = Translator(model, base.tokenizer, base.source_tokenizer, base.info)
        for beam in (1, 4):
            t0 = time.perf_counter()
            result = evaluate_translator(translator, sources, references, SearchConfig(beam_size=beam))
            seconds = time.perf_counter() - t0
            scores[name, beam] = result["bleu"]
            delta = result["bleu"] - scores["fp32", beam]
            rows.append(
                [name, beam, f"{result['bleu']:.2f}", f"{delta:+.2f}", f"{result['chrf']:.2f}", f"{seconds:.0f}"]
            )
            print(rows[-1], flush=True)
    write(
        args.out,
        "quality_bleu",
        f"Translation BLEU, {args.checkpoint} on Multi30k test_2016_flickr ({len(sources)} sentences)",
        ["weights", "beam", "BLEU", "vs fp32", "chrF", "seconds"],
        rows,
        ["the same checkpoint, quantised at load by optimize(); encoder and decoder linears and the head"],
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--part", choices=("perplexity", "whisper", "bleu"), required=True)
    p.add_argument("--checkpoint", help="translation run folder (--part bleu)")
    p.add_argument("--block-size", type=int, default=1024)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--max-tokens", type=int, default=None, help="score only the first N tokens")
    p.add_argument("--out", default=os.environ.get("OUT") or str(Path(__file__).parent / "results"))
    args = p.parse_args()
    args.out = Path(args.out)
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_grad_enabled(False)
    {"perplexity": perplexity_part, "whisper": whisper_part, "bleu": bleu_part}[args.part](args)


if __name__ == "__main__":
    main()
