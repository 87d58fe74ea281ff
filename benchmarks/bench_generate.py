"""Generation: attentive's decoders vs HF generate and x-transformers; beam search vs HF Marian.

Language-model decoding: 256 new tokens (greedy, no early stop) after a 32-token prompt, at batch
1 and batch 32, GPT-2 small shape in bf16 on CUDA (fp32 and a small shape on CPU). Contestants:

* ``attentive generate()``: the decoding engine with its dynamic KV cache (eager);
* ``attentive static cache``: the same engine with ``cache="static"``, one fixed-shape step; on CUDA
  ``cache="cuda_graph"``, each token one CUDA graph replay (``+compile``: the step's model forward
  compiled with fullgraph=True first);
* ``HF generate``: GPT2LMHeadModel.generate with its own (dynamic) KV cache;
* ``x-transformers``: AutoregressiveWrapper.generate with ``cache_kv=True``, temperature 0.

Beam search (beam 4, translation): attentive's ``beam_search`` vs MarianMTModel.generate
(num_beams=4) on the same transformer-base shape and the same source batch.

    python benchmarks/bench_generate.py --device cpu
    python benchmarks/bench_generate.py --device cuda
"""

from __future__ import annotations

import common
import torch

from attentive.models import (
    DecoderLM,
    DecoderLMConfig,
    EncoderDecoder,
    EncoderDecoderConfig,
)

FULL = dict(vocab=50257, layers=12, d_model=768, heads=12, context=1024, prompt=32, new=256, batches=(1, 32))
SMALL = dict(vocab=50257, layers=4, d_model=256, heads=4, context=1024, prompt=32, new=256, batches=(1, 32))
BEAM_FULL = dict(vocab=37000, layers=6, d_model=512, heads=8, d_ff=2048, sentences=32, src_len=32, max_len_b=32)
BEAM_SMALL = dict(vocab=8000, layers=3, d_model=256, heads=4, d_ff=1024, sentences=8, src_len=16, max_len_b=16)
PAD, BOS, EOS = 0, 1, 2


def dtype_for(device: str) -> torch.dtype:
    return torch.bfloat16 if device == "cuda" else torch.float32


def timed(fn, args, work: float, warm_fn=None, unit: str = "tok") -> common.Row:
    """Median time of ``fn()`` after warm-up (``warm_fn``, default ``fn``)."""
    device = args.device
    common.time_runs(warm_fn or fn, device, args.warmup, 0)
    times = common.time_runs(fn, device, 0, args.runs)
    peak = common.measure_peak(fn, device)
    return common.Row("", "", seconds=common.median(times), work=work, unit=unit, peak_bytes=peak, times=times)


# ----------------------------------------------------------------------------- language-model decoding


def our_lm(cfg, device):
    config = DecoderLMConfig(
        vocab_size=cfg["vocab"],
        num_layers=cfg["layers"],
        d_model=cfg["d_model"],
        num_heads=cfg["heads"],
        d_ff=4 * cfg["d_model"],
        max_len=cfg["context"],
        dropout=0.0,
        attention_dropout=0.0,
    )
    return DecoderLM(config).to(device, dtype_for(device)).eval()


def ours_generate(args, cfg, prompt, cache: str = "dynamic", compiled: bool = False):
    from attentive.decode import generate

    model = our_lm(cfg, args.device)
    prompts = prompt.tolist()

    def run(new=cfg["new"]):
        out = generate(
            model, None, prompts, max_new_tokens=new, temperature=0.0, stop_tokens=(), cache=cache, compile=compiled
        )
        assert all(len(t) == new for t in out.tokens)

    # compiled: extra warm-up calls, as inductor may finish compiling in the background (CPU)
    warm = (lambda: [run() for _ in range(3)]) if compiled else (lambda: run(8))
    row = timed(run, args, prompt.shape[0] * cfg["new"], warm_fn=warm)
    row.extra["cache"] = cache
    return row


def static_cache(args) -> str:
    return "cuda_graph" if args.device == "cuda" else "static"


def hf_generate(args, cfg, prompt):
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        vocab_size=cfg["vocab"],
        n_positions=cfg["context"],
        n_embd=cfg["d_model"],
        n_layer=cfg["layers"],
        n_head=cfg["heads"],
    )
    model = GPT2LMHeadModel(config).to(args.device, dtype_for(args.device)).eval()
    model.generation_config.eos_token_id = None  # run the full length, as the others do
    model.generation_config.pad_token_id = PAD
    mask = torch.ones_like(prompt)

    def run(new=cfg["new"]):
        with torch.no_grad():
            out = model.generate(input_ids=prompt, attention_mask=mask, max_new_tokens=new, do_sample=False)
        assert out.shape[1] == prompt.shape[1] + new

    return timed(run, args, prompt.shape[0] * cfg["new"], warm_fn=lambda: run(8))


def xt_generate(args, cfg, prompt):
    from x_transformers import AutoregressiveWrapper, Decoder, TransformerWrapper

    net = TransformerWrapper(
        num_tokens=cfg["vocab"],
        max_seq_len=cfg["context"],
        tie_embedding=True,
        attn_layers=Decoder(dim=cfg["d_model"], depth=cfg["layers"], heads=cfg["heads"], attn_flash=True),
    )
    model = AutoregressiveWrapper(net).to(args.device, dtype_for(args.device)).eval()

    def run(new=cfg["new"]):
        out = model.generate(prompt, new, temperature=0.0, cache_kv=True)
        assert out.shape[1] == new

    return timed(run, args, prompt.shape[0] * cfg["new"], warm_fn=lambda: run(8))


def bandwidth_floor(report: common.Report, args, cfg) -> str:
    """At batch 1 every token reads every weight once; the device's read bandwidth then caps the
    tokens/s of any implementation. Says how close each contestant gets to that cap."""
    model = our_lm(cfg, args.device)
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())  # tied head counted once
    del model
    bandwidth = common.read_bandwidth(args.device)
    ceiling = bandwidth / weight_bytes
    shares = ", ".join(f"{r.name} {r.rate / ceiling:.0%}" for r in report.rows if r.rate)
    return (
        f"bandwidth ceiling: {weight_bytes / 2**20:.0f} MiB of weights read per token at a measured "
        f"{bandwidth / 1e9:.1f} GB/s read bandwidth allows at most {ceiling:,.0f} tok/s; "
        f"share of that ceiling: {shares}"
    )


# ----------------------------------------------------------------------------- beam search


def beam_sources(cfg, device):
    src = torch.randint(3, cfg["vocab"], (cfg["sentences"], cfg["src_len"]))
    return src.to(device)


def ours_beam(args, cfg, src):
    from attentive.decode.search import SearchConfig, beam_search

    model = (
        EncoderDecoder(
            EncoderDecoderConfig(
                src_vocab_size=cfg["vocab"],
                tgt_vocab_size=cfg["vocab"],
                d_model=cfg["d_model"],
                num_heads=cfg["heads"],
                d_ff=cfg["d_ff"],
                num_encoder_layers=cfg["layers"],
                num_decoder_layers=cfg["layers"],
                dropout=0.0,
                attention_dropout=0.0,
                max_len=256,
                pad_id=PAD,
            )
        )
        .to(args.device, dtype_for(args.device))
        .eval()
    )
    search = SearchConfig(beam_size=4, max_len_b=cfg["max_len_b"])
    lengths = []

    def run():
        out = beam_search(model, src, search, bos_id=BOS, eos_id=EOS)
        lengths.append(sum(len(t) for t in out.tokens))

    row = timed(run, args, src.shape[0], unit="sent")
    row.extra["output_tokens"] = lengths[-1]
    return row


def hf_beam(args, cfg, src):
    from transformers import MarianConfig, MarianMTModel

    config = MarianConfig(
        vocab_size=cfg["vocab"],
        decoder_vocab_size=cfg["vocab"],
        d_model=cfg["d_model"],
        encoder_layers=cfg["layers"],
        decoder_layers=cfg["layers"],
        encoder_attention_heads=cfg["heads"],
        decoder_attention_heads=cfg["heads"],
        encoder_ffn_dim=cfg["d_ff"],
        decoder_ffn_dim=cfg["d_ff"],
        activation_function="relu",
        dropout=0.0,
        attention_dropout=0.0,
        max_position_embeddings=256,
        scale_embedding=True,
        pad_token_id=PAD,
        decoder_start_token_id=BOS,
        eos_token_id=EOS,
        share_encoder_decoder_embeddings=True,
    )
    model = MarianMTModel(config).to(args.device, dtype_for(args.device)).eval()
    mask = (src != PAD).long()
    new = cfg["src_len"] + cfg["max_len_b"] + 1  # attentive's limit: source length + max_len_b + EOS
    lengths = []

    def run():
        with torch.no_grad():
            out = model.generate(
                input_ids=src, attention_mask=mask, num_beams=4, max_new_tokens=new, length_penalty=0.6, do_sample=False
            )
        lengths.append(int(((out != PAD) & (out != EOS) & (out != BOS)).sum()))

    row = timed(run, args, src.shape[0], unit="sent")
    row.extra["output_tokens"] = lengths[-1]
    return row


def main() -> None:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--batches", default=None, help="comma-separated batch sizes (default 1,32)")
    p.add_argument("--vocab", type=int, default=None, help="vocabulary size (default GPT-2's 50257)")
    p.add_argument("--layers", type=int, default=None, help="override the config's number of layers")
    p.add_argument("--d-model", type=int, default=None, help="override the config's width")
    p.add_argument("--no-beam", action="store_true", help="skip the beam-search table")
    args = common.setup(p.parse_args())
    cfg = dict(SMALL if args.small else FULL)
    if args.batches:
        cfg["batches"] = tuple(int(b) for b in args.batches.split(","))
    cfg["vocab"] = args.vocab or cfg["vocab"]
    cfg["layers"] = args.layers or cfg["layers"]
    cfg["d_model"] = args.d_model or cfg["d_model"]
    args.warmup = args.warmup if args.warmup is not None else 1
    args.runs = args.runs or 3
    cuda = args.device == "cuda"
    static_name = "CUDA graph" if cuda else "static cache"
    for batch in cfg["batches"]:
        prompt = torch.randint(3, cfg["vocab"], (batch, cfg["prompt"]), device=args.device)
        report = common.Report(
            f"generate_b{batch}",
            f"Greedy generation, batch {batch}: {cfg['new']} new tokens after {cfg['prompt']}",
            args,
            dict(
                **{k: v for k, v in cfg.items() if k != "batches"},
                batch=batch,
                dtype=str(dtype_for(args.device)).replace("torch.", ""),
            ),
        )
        # quick rows first, the compiled one last: a time-out cuts compilation, not the peers
        report.run(
            f"attentive {static_name}", common.OURS, "", lambda: ours_generate(args, cfg, prompt, static_cache(args))
        )
        report.run("HF generate", "hf", "", lambda: hf_generate(args, cfg, prompt))
        report.run("x-transformers generate", "x-transformers", "", lambda: xt_generate(args, cfg, prompt))
        report.run("attentive generate() (dynamic cache)", common.OURS, "", lambda: ours_generate(args, cfg, prompt))
        report.run(
            f"attentive {static_name} + compile",
            common.OURS,
            "",
            lambda: ours_generate(args, cfg, prompt, static_cache(args), compiled=True),
        )
        report.notes.append("tokens/s = batch x new tokens / time, prompt encoding included")
        if batch == 1:
            report.notes.append(bandwidth_floor(report, args, cfg))
        report.finish()

    if args.no_beam:
        return
    bcfg = dict(BEAM_SMALL if args.small else BEAM_FULL)
    src = beam_sources(bcfg, args.device)
    report = common.Report(
        "beam",
        "Beam search (beam 4), translation model",
        args,
        dict(**bcfg, dtype=str(dtype_for(args.device)).replace("torch.", "")),
    )
    report.run("attentive beam_search", common.OURS, "", lambda: ours_beam(args, bcfg, src))
    report.run("HF MarianMTModel.generate", "hf", "", lambda: hf_beam(args, bcfg, src))
    report.notes.append(
        "random weights: both run to the same length limit unless EOS wins a beam by chance; output_tokens in the JSON"
    )
    report.finish()


if __name__ == "__main__":
    main()
