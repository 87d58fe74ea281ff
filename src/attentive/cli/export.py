"""``attentive export``: write a model in a format other tools load.

    attentive export runs/merged --to hf   --out hf-folder/         # transformers: AutoModel*.from_pretrained
    attentive export runs/my-lora --to peft --out peft-adapter/     # peft: PeftModel.from_pretrained
    attentive export runs/merged --to gguf --out model.gguf --dtype q8_0   # llama.cpp (f32, f16, q8_0)
    attentive export runs/merged --to onnx --out onnx-folder/       # ONNX Runtime

MODEL is any model spec (``attentive.from_pretrained``: an attentive checkpoint or run folder, a
LoRA run folder (merged on the way), a Hugging Face folder, a GGUF file, a bundled model's short
name, ...); for ``--to peft`` it is a LoRA run folder, whose adapter is exported as it is. What the target
cannot represent (a positional scheme, an option, a model family) is refused with one line, and
the output is written under a temporary name and renamed into place: it appears whole or not at all.
"""

from __future__ import annotations

from .common import MODEL_HELP

TARGETS = ("hf", "peft", "gguf", "onnx")


def run(args) -> int:
    from ..interop.resolve import from_pretrained, resolve
    from ..lora import is_adapter_folder

    if args.to == "peft":
        from ..interop.peft_export import export_peft

        where = resolve(args.model)
        if where.path is None or not is_adapter_folder(where.path):
            raise ValueError(
                f"--to peft exports a LoRA adapter; {args.model} holds no adapter.json (a LoRA run folder has one)"
            )
        export_peft(where.path, args.out, base_name=args.base_name)
    else:
        if args.dtype is not None and args.to != "gguf":
            raise ValueError(f"--dtype is for --to gguf (f32, f16, q8_0); --to {args.to} writes float32")
        pre = from_pretrained(args.model, optimize=False)  # the weights as they are
        if args.to == "hf":
            from ..interop.hf_export import export_hf

            export_hf(pre.model, pre.tokenizer, args.out)
        elif args.to == "gguf":
            from ..interop.gguf_export import export_gguf

            export_gguf(pre.model, pre.tokenizer, args.out, dtype=args.dtype or "f16", name=pre.name)
        else:
            from ..interop.onnx_export import export_onnx

            export_onnx(pre.model, pre.tokenizer, args.out)
    print(f"exported {args.model} ({args.to}) -> {args.out}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("export", help="write a model as a Hugging Face folder, PEFT adapter, GGUF file or ONNX graphs")
    p.add_argument("model", metavar="MODEL", help=f"the model to export: {MODEL_HELP}")
    p.add_argument("--to", required=True, choices=TARGETS, help="target format")
    p.add_argument("--out", required=True, metavar="PATH", help="output folder (a .gguf file for --to gguf)")
    p.add_argument("--dtype", choices=("f32", "f16", "q8_0"), help="GGUF tensor type (default f16)")
    p.add_argument(
        "--base-name",
        metavar="NAME_OR_PATH",
        help="--to peft: the base model to record (default: the one the adapter was trained on)",
    )
    p.set_defaults(func=run)
