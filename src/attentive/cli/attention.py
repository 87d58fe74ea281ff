"""``attentive attention``: translate one sentence and draw its cross-attention as a heatmap PNG
(source tokens along x, output tokens along y; one panel per head, or their mean)."""

from __future__ import annotations

from .common import add_device, add_model
from .translate import add_search_options, check_search_options, load_translator, search_config


def run(args) -> int:
    check_search_options(args)
    from ..viz.attention import plot_attention

    translator = load_translator(args)
    result = translator.cross_attention(args.text, search_config(args, translator))
    layers = result.weights.shape[0]
    if not -layers <= args.layer < layers:
        raise ValueError(f"--layer {args.layer} is out of range: the decoder has {layers} layers")
    layer = args.layer % layers
    title = f"decoder layer {layer} cross-attention: {result.translation}"
    png = plot_attention(
        result.weights[layer], result.source_tokens, result.output_tokens, args.png, average=args.average, title=title
    )
    print(result.translation)
    print(f"wrote {png}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("attention", help="heatmap of a translation's cross-attention weights")
    add_model(p, "translation run folder or checkpoint", required=True)
    p.add_argument("text", help="the sentence to translate")
    p.add_argument("--png", required=True, help="output PNG file")
    p.add_argument("--layer", type=int, default=-1, help="decoder layer (default: the last)")
    p.add_argument("--average", action="store_true", help="one panel: the mean over heads")
    add_search_options(p)
    add_device(p)
    p.set_defaults(func=run)
