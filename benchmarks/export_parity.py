"""Export parity: how far what other tools compute on attentive's exports is from attentive itself.

Not a speed benchmark: it prints the README's export table, the max abs difference between the
reading tool's outputs and attentive's on the same inputs (fp32, CPU), for the shipped models
(SmolLM2-135M-Instruct, all-MiniLM-L6-v2, Whisper tiny.en) and small models made here (GPT-2-
and ViT-shaped, random weights). The tests hold every figure to its limit; this shows the value.

    python benchmarks/export_parity.py              # about 3 minutes on 2 CPU cores
    python benchmarks/export_parity.py --onnx-lm    # + SmolLM2 through ONNX Runtime (4 more minutes)
"""

from __future__ import annotations

import argparse
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

import attentive
from attentive.interop import minilm_dir, smollm2_gguf, whisper_ct2_dir
from attentive.interop.gguf_export import export_gguf
from attentive.interop.hf_export import export_hf
from attentive.interop.onnx_export import _LMStep, export_onnx, greedy_onnx
from attentive.interop.peft_export import export_peft
from attentive.lora import LoRAConfig, add_lora, save_adapter

PROMPT = "Translate to English: Zwei Männer spielen Fußball auf dem grünen Rasen im Park."


def diff(a, b) -> float:
    a = a.detach().numpy() if torch.is_tensor(a) else a
    b = b.detach().numpy() if torch.is_tensor(b) else b
    return float(np.abs(a - b).max())


def row(fmt: str, model: str, reader: str, what: str, value: float | str) -> None:
    shown = value if isinstance(value, str) else f"{value:.1e}" if value else "0"
    print(f"| {fmt} | {model} | {reader} | {what} | {shown} |")


def hf_rows(out: Path, smollm2) -> None:
    import transformers

    ids = torch.tensor([smollm2.tokenizer.encode(PROMPT)])
    export_hf(smollm2.model, smollm2.tokenizer, out / "smollm2-hf")
    hf = transformers.AutoModelForCausalLM.from_pretrained(out / "smollm2-hf").eval()
    with torch.no_grad():
        row(
            "HF folder",
            "SmolLM2-135M-Instruct",
            "LlamaForCausalLM",
            f"logits, {ids.shape[1]} tokens",
            diff(hf(ids).logits, smollm2.model(ids)),
        )
    torch.manual_seed(0)
    gpt2 = attentive.build(
        "gpt2-small",
        num_layers=4,
        d_model=256,
        num_heads=4,
        d_ff=1024,
        vocab_size=1000,
        max_len=128,
        dropout=0.0,
        attention_dropout=0.0,
    ).eval()
    export_hf(gpt2, None, out / "gpt2-hf")
    hf = transformers.AutoModelForCausalLM.from_pretrained(out / "gpt2-hf").eval()
    x = torch.randint(0, 1000, (2, 64))
    with torch.no_grad():
        row(
            "HF folder",
            "GPT-2-shaped, 4 x 256, random",
            "GPT2LMHeadModel",
            "logits, 2 x 64 tokens",
            diff(hf(x).logits, gpt2(x)),
        )
    minilm = attentive.from_pretrained(minilm_dir())
    export_hf(minilm.model, minilm.tokenizer, out / "minilm-hf")
    hf = transformers.AutoModel.from_pretrained(out / "minilm-hf").eval()
    x = torch.tensor([minilm.tokenizer.encode(PROMPT, add_special_tokens=True)])
    with torch.no_grad():
        row(
            "HF folder",
            "all-MiniLM-L6-v2",
            "BertModel",
            "last hidden states",
            diff(hf(x).last_hidden_state, minilm.model(x)),
        )
    whisper = attentive.from_pretrained(whisper_ct2_dir())
    export_hf(whisper.model, whisper.tokenizer, out / "whisper-hf")
    hf = transformers.WhisperForConditionalGeneration.from_pretrained(out / "whisper-hf").eval()
    features, ids = torch.randn(1, 80, 3000), torch.tensor([[50257, 50362, 15496, 995, 13]])
    with torch.no_grad():
        memory = whisper.model.encode(features).hidden
        row(
            "HF folder",
            "Whisper tiny.en",
            "WhisperForConditionalGeneration",
            "encoder output",
            diff(hf.model.encoder(features).last_hidden_state, memory),
        )
        row(
            "HF folder",
            "Whisper tiny.en",
            "WhisperForConditionalGeneration",
            "decoder logits",
            diff(
                hf(input_features=features, decoder_input_ids=ids).logits,
                whisper.model.head(whisper.model.decode(ids, memory).hidden),
            ),
        )
    torch.manual_seed(0)
    paper = attentive.build(
        "transformer-base", src_vocab_size=8000, tgt_vocab_size=8000, dropout=0.0, attention_dropout=0.0
    ).eval()
    export_hf(paper, None, out / "marian-hf")
    hf = transformers.AutoModelForSeq2SeqLM.from_pretrained(out / "marian-hf").eval()
    src, tgt = torch.randint(4, 8000, (2, 24)), torch.randint(4, 8000, (2, 20))
    with torch.no_grad():
        row(
            "HF folder",
            "the paper's base model (post-LN), random",
            "MarianMTModel",
            "logits, 2 x 20 tokens",
            diff(hf(input_ids=src, decoder_input_ids=tgt).logits, paper(src, tgt)),
        )
    torch.manual_seed(0)
    vit = attentive.build("vit-tiny").eval()
    torch.nn.init.normal_(vit.head.weight, std=0.5)
    export_hf(vit, None, out / "vit-hf")
    hf = transformers.AutoModelForImageClassification.from_pretrained(out / "vit-hf").eval()
    pixels = torch.rand(4, 1, 28, 28)
    with torch.no_grad():
        row(
            "HF folder",
            "ViT (vit-mnist shape), random",
            "ViTForImageClassification",
            "logits, 4 images",
            diff(hf((pixels - vit.config.pixel_mean) / vit.config.pixel_std).logits, vit(pixels)),
        )


def peft_rows(out: Path, smollm2) -> None:
    import transformers
    from peft import PeftModel

    torch.manual_seed(0)
    base = attentive.from_pretrained(smollm2_gguf()).model
    add_lora(
        base,
        LoRAConfig(rank=16, alpha=32, targets=("q_proj", "k_proj", "v_proj", "out_proj", "gate", "up", "down")),
        base=str(smollm2_gguf()),
    )
    with torch.no_grad():
        for name, p in base.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.01)
    save_adapter(out / "lora", base)
    export_peft(out / "lora", out / "peft", base_name=str(out / "smollm2-hf"))
    hf = transformers.AutoModelForCausalLM.from_pretrained(out / "smollm2-hf")
    model = PeftModel.from_pretrained(hf, out / "peft").eval()
    ids = torch.tensor([smollm2.tokenizer.encode(PROMPT)])
    with torch.no_grad():
        row(
            "PEFT adapter",
            "SmolLM2 + rank-16 LoRA on every linear (random B)",
            "PeftModel",
            "logits",
            diff(model(input_ids=ids).logits, base.eval()(ids)),
        )


def gguf_rows(out: Path, smollm2) -> None:
    ids = torch.tensor([smollm2.tokenizer.encode(PROMPT)])
    with torch.no_grad():
        ref = smollm2.model(ids)
    for dtype in ("f32", "f16", "q8_0"):
        path = export_gguf(smollm2.model, smollm2.tokenizer, out / f"smollm2-{dtype}.gguf", dtype=dtype)
        back = attentive.from_pretrained(path)
        with torch.no_grad():
            got = back.model(ids)
        same = bool(torch.equal(got.argmax(-1), ref.argmax(-1)))
        row(
            "GGUF " + dtype,
            "SmolLM2-135M-Instruct",
            "gguf.GGUFReader -> attentive",
            f"logits (largest logit {ref.abs().max():.1f}; argmax {'equal' if same else 'differs'})",
            diff(got, ref),
        )


def onnx_rows(out: Path, smollm2, with_lm: bool) -> None:
    import onnxruntime as ort

    def session(path):
        return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    minilm = attentive.from_pretrained(minilm_dir())
    folder = export_onnx(minilm.model, minilm.tokenizer, out / "minilm-onnx")
    for length in (1, 12):
        ids = torch.randint(1000, 2000, (1, length))
        mask = torch.ones_like(ids)
        with torch.no_grad():
            hidden = minilm.model(ids, mask.bool())
        got = session(folder / "model.onnx").run(None, {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})
        row("ONNX", "all-MiniLM-L6-v2", "onnxruntime", f"hidden states, length {length}", diff(got[0], hidden))
    torch.manual_seed(0)
    vit = attentive.build("vit-tiny").eval()
    torch.nn.init.normal_(vit.head.weight, std=0.5)
    folder = export_onnx(vit, None, out / "vit-onnx")
    for batch in (1, 8):
        pixels = torch.rand(batch, 1, 28, 28)
        with torch.no_grad():
            row(
                "ONNX",
                "ViT (vit-mnist shape), random",
                "onnxruntime",
                f"logits, batch {batch}",
                diff(session(folder / "model.onnx").run(None, {"pixel_values": pixels.numpy()})[0], vit(pixels)),
            )
    if not with_lm:
        return
    folder = export_onnx(smollm2.model, smollm2.tokenizer, out / "smollm2-onnx")
    step = _LMStep(smollm2.model).eval()
    for length in (1, 16):
        ids = torch.tensor([smollm2.tokenizer.encode(PROMPT)[:length]])
        mask, positions = torch.ones_like(ids), torch.arange(length)[None]
        with torch.no_grad():
            logits = step(ids, mask, positions)[0]
        got = session(folder / "prefill.onnx").run(
            None, {"input_ids": ids.numpy(), "attention_mask": mask.numpy(), "position_ids": positions.numpy()}
        )
        row("ONNX", "SmolLM2-135M-Instruct", "onnxruntime (prefill)", f"logits, length {length}", diff(got[0], logits))
    from attentive.decode import generate

    prompt = smollm2.tokenizer.encode(smollm2.tokenizer.apply_chat_template([{"role": "user", "content": PROMPT}]))
    ours = generate(smollm2.model, smollm2.tokenizer, [prompt], max_new_tokens=32, temperature=0.0).tokens[0]
    theirs = greedy_onnx(folder, prompt, 32, tuple(smollm2.tokenizer.eos_ids))
    row(
        "ONNX",
        "SmolLM2-135M-Instruct",
        "onnxruntime (prefill + decode-with-past)",
        f"greedy tokens ({len(ours)})",
        "identical" if theirs == ours else "DIFFER",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--onnx-lm", action="store_true", help="also export SmolLM2 to ONNX (4 more minutes)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    import transformers

    transformers.utils.logging.set_verbosity_error()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    smollm2 = attentive.from_pretrained(smollm2_gguf())
    print("| format | model | read by | compared | max abs diff |\n|---|---|---|---|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        hf_rows(out, smollm2)
        peft_rows(out, smollm2)
        gguf_rows(out, smollm2)
        onnx_rows(out, smollm2, args.onnx_lm)


if __name__ == "__main__":
    main()
