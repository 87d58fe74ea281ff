"""Rows decoding in the slots of one static KV cache: fixed shapes, and rows that come and go.

``DecodeBatch`` (``batch.py``) offers either rows that join and leave between steps (a dynamic
cache, whose shapes change every step, so it cannot be compiled) or fixed shapes (a static
cache, whose batch is fixed once started). A server needs both: requests arrive while others
decode, and the step should be the compiled one. ``SlotBatch`` gives both, as llama.cpp's and
vLLM's servers do, with a ``SlotCache``: a buffer of S slots of L positions each, where every
slot holds one sequence at its own length.

* **A step** feeds one token per row. Row r writes its key at its own slot's length and sees the
  slots' positions below it (the key mask); its position is that length. Shapes depend only on
  the *bucket*, the smallest power of two that covers the highest slot in use, so one compiled
  step (``compile=``) serves every batch of rows up to that bucket; slots in the bucket that
  hold no row are fed padding and their logits dropped.
* **Joining** (``join``) writes a prompt into a free slot through ``StaticCache.over`` (the
  slot's own view, eager: a prompt is many rows, where the products dominate), ``chunk`` tokens
  at a time; ``prefill`` advances it chunk by chunk, so a caller can interleave a long prompt
  with the steps of running rows (chunked prefill).
* **Leaving** (``select``) frees a slot; a row that is kept twice (beam search) is copied into a
  free slot.
* **Prefix reuse.** A slot remembers the tokens whose keys it holds, also after its row has
  left. A new prompt takes the free slot that already holds its longest beginning (a chat's
  system prompt), or copies that beginning from a slot in use, and computes only the rest.
* **Full slots.** A row that reaches L keeps its newest half (with the new token) and re-encodes
  it from position 0, as ``DecodeBatch`` does, so generation can run past the context.

Settings come from ``EngineConfig``: ``max_batch`` slots (None: as many as the first batch's
rows, growing when more join), ``context`` positions a slot (None: the first batch's longest
prompt + ``max_new_tokens``, rounded up to a power of two from 256, at most the model's
context; it grows when a later row needs more), ``compile``, ``pad_id``, ``packed_head``.
Decoder-only models (no encoder memory).

Dimension names: S slots, L positions a slot, R rows, Rb rows of a bucket, V vocabulary.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ..nn.cache import CacheLayout, SlotCache, StaticCache
from ..nn.packed import inference_head
from .config import COMPILE_PAYS_TOKENS, EngineConfig

MIN_SLOT_LEN = 256  # the smallest slot length sized from the requests
PREFILL_CHUNK = 512  # tokens of a prompt written per forward pass
MIN_SHARED_PREFIX = 16  # tokens a prompt must share with a slot in use before they are copied


def bucket(n: int, limit: int) -> int:
    """The smallest power of two >= ``n``, at most ``limit``."""
    size = 1
    while size < n:
        size *= 2
    return min(size, limit)


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


@dataclass
class Prefill:
    """A prompt being written into ``slot``: ``done`` of its tokens have keys there."""

    slot: int
    prompt: list[int]
    done: int
    logits: Tensor | None = None  # (V,) once the whole prompt is in

    @property
    def finished(self) -> bool:
        return self.logits is not None


class SlotBatch:
    """Rows in the slots of one ``SlotCache``; the same calls as ``DecodeBatch`` (``start``,
    ``join``, ``step``, ``select``), plus ``begin`` / ``prefill`` / ``attach`` for prompts written
    a chunk at a time. See the module docstring."""

    mode = "slots"
    fixed = False  # rows join and leave between steps
    joinable = True
    streaming = False

    def __init__(self, model, config: EngineConfig, *, layout: CacheLayout, head=None, chunk: int = PREFILL_CHUNK):
        if layout.cross_attention:
            raise ValueError(
                f"cache='slots' decodes decoder-only models; {type(model).__name__} reads an encoder's "
                "output: use cache='dynamic'"
            )
        self.model, self.config, self.layout = model, config, layout
        param = next(model.parameters())
        self.device, self.dtype = param.device, param.dtype
        self.pad_id = config.pad_id or 0
        self.context = min(config.context or layout.context, layout.context)
        self.head = head if head is not None else inference_head(model.head, self.device, config.packed_head)
        self.compile, self.chunk = config.compile, chunk
        # steps run at least this many rows (padding the rest): a server sets 2, so one compiled
        # graph, dynamic in the rows, serves every load (one row alone is a graph of its own)
        self.min_rows = 1
        self.keys: Tensor | None = None  # (layers, S, Hkv, L, Dh)
        self.values: Tensor | None = None
        self.write_at: Tensor | None = None  # (S,) where each slot's next key goes (filled before a step)
        self.slot_len = 0  # L
        self.lengths: list[int] = []  # (S,) keys each slot holds
        self.tokens: list[list[int]] = []  # (S,) the tokens whose keys each slot holds
        self.slot_of: list[int] = []  # (R,) each row's slot
        self.reserved: set[int] = set()  # slots of prompts begun and not attached yet
        self.visible: Tensor | None = None  # (S,) the highest position each slot's row sees in a step
        self._steps: dict[int, object] = {}  # bucket -> its step (compiled once)

    # ------------------------------------------------------------------ shape
    @property
    def rows(self) -> int:
        return len(self.slot_of)

    @property
    def slots(self) -> int:
        return len(self.lengths)

    def _reserve(self, slots: int, slot_len: int) -> None:
        """Buffers for at least ``slots`` x ``slot_len``; growing copies what the slots hold and
        drops the compiled steps (their shapes changed)."""
        if slots <= self.slots and slot_len <= self.slot_len:
            return
        if slots > self.slots:  # grow to a power of two (at most max_batch): few copies as load rises
            cap = self.config.max_batch
            slots = bucket(slots, 1 << 30) if cap is None else max(slots, min(bucket(slots, 1 << 30), cap))
        slots, slot_len = max(slots, self.slots), max(slot_len, self.slot_len)
        shape = self.layout.static_shape(slots, slot_len)
        keys = torch.zeros(shape, dtype=self.dtype, device=self.device)
        values = torch.zeros(shape, dtype=self.dtype, device=self.device)
        if self.keys is not None:
            keys[:, : self.slots, :, : self.slot_len] = self.keys
            values[:, : self.slots, :, : self.slot_len] = self.values
        self.keys, self.values = keys, values
        self.write_at = torch.zeros(slots, dtype=torch.long, device=self.device)
        self.visible = torch.zeros(slots, dtype=torch.long, device=self.device)
        self.lengths += [0] * (slots - self.slots)
        self.tokens += [[] for _ in range(slots - len(self.tokens))]
        self.slot_len = slot_len
        self._steps = {}

    def _sized(self, needed: int) -> int:
        """A slot length for ``needed`` positions: the engine's context if it gave one, else a
        power of two from ``MIN_SLOT_LEN``, at most the model's context."""
        if self.config.context is not None:
            return self.context
        return bucket(max(needed, MIN_SLOT_LEN), self.context)

    def warm_up(self) -> None:
        """Compile the step now (a server, before its first request): the graph for one row and
        the one for any number of rows (dynamic in the batch), with the slots as long as the
        engine's context. ``compile="auto"`` becomes True: a server lives long enough."""
        if self.compile == "auto":
            self.compile = True
        if not self.compile:
            return
        self._reserve(2, self._sized(self.context))
        with torch.no_grad():
            for size in sorted({max(1, self.min_rows), 2}):
                self._step([], [], size)  # padding only

    # ------------------------------------------------------------------ rows in
    @torch.no_grad()
    def start(
        self,
        prompts: Sequence[Sequence[int]],
        memory: Tensor | None = None,
        memory_key_mask: Tensor | None = None,
        max_new_tokens: int = 0,
    ) -> Tensor:
        """Replace the rows with ``prompts``; returns their next-token logits ``(R, V)``. The slots
        keep what they hold (a later prompt may reuse it)."""
        if not prompts:
            raise ValueError("no prompts to decode")
        self.slot_of = []
        longest = max(len(p) for p in prompts)
        if self.compile == "auto":  # where it pays: enough tokens to decode to earn the compile back
            self.compile = len(prompts) * max(max_new_tokens, 1) >= COMPILE_PAYS_TOKENS
        self._reserve(len(prompts), self._sized(longest + max_new_tokens))
        return self.join(prompts, memory, memory_key_mask)

    @torch.no_grad()
    def join(
        self, prompts: Sequence[Sequence[int]], memory: Tensor | None = None, memory_key_mask: Tensor | None = None
    ) -> Tensor:
        """Add rows between steps, each prompt written whole; returns their logits ``(n, V)``."""
        pending = [self.begin(p, memory) for p in prompts]
        for p in pending:
            while not p.finished:
                self.prefill(p)
        return self.attach(pending)

    def begin(self, prompt: Sequence[int], memory: Tensor | None = None) -> Prefill:
        """Take a slot for ``prompt`` (reusing what a slot holds of its beginning); nothing is
        computed yet (``prefill``)."""
        if memory is not None:
            raise ValueError("cache='slots' decodes decoder-only models: a row cannot carry encoder memory")
        prompt = [int(t) for t in prompt]
        if not prompt:
            raise ValueError("a row needs at least one prompt token")
        keep = max(1, self.context - 1)  # the model sees the last tokens; a slot's last position stays
        if len(prompt) > keep:  # free for the padding rows of a step (see _step) while this one waits
            prompt = prompt[-keep:]
        self._reserve(self.rows + len(self.reserved) + 1, self._sized(len(prompt) + 1))
        slot, shared = self._take_slot(prompt)
        self.reserved.add(slot)
        return Prefill(slot, prompt, shared)

    def prefill(self, pending: Prefill, budget: int | None = None) -> bool:
        """Write up to ``budget`` (default ``chunk``) more tokens of a prompt; True when all are in."""
        if pending.finished:
            return True
        budget = self.chunk if budget is None else budget
        if budget <= 0:
            return False
        end = min(len(pending.prompt), pending.done + budget)
        with torch.no_grad():
            logits = self._write(pending.slot, pending.prompt[pending.done : end], pending.done)
        pending.done = end
        self.tokens[pending.slot] = pending.prompt[:end]
        self.lengths[pending.slot] = end
        if end == len(pending.prompt):
            pending.logits = logits
        return pending.finished

    def attach(self, pending: Sequence[Prefill]) -> Tensor:
        """Prompts whose prefill has finished become rows (after the current ones); their logits ``(n, V)``."""
        if any(not p.finished for p in pending):
            raise ValueError("attach takes prompts whose prefill has finished")
        self.reserved -= {p.slot for p in pending}
        self.slot_of += [p.slot for p in pending]
        return torch.stack([p.logits for p in pending])

    def abandon(self, pending: Sequence[Prefill]) -> None:
        """Prompts begun and no longer wanted (a cancelled request): their slots are free again,
        keeping the keys written so far for a later prompt."""
        self.reserved -= {p.slot for p in pending}

    def _take_slot(self, prompt: list[int]) -> tuple[int, int]:
        """A free slot for ``prompt`` and how many of its tokens' keys are there already: the free
        slot holding its longest beginning, else the lowest free slot, with the beginning copied
        from a slot in use that holds it (at least ``MIN_SHARED_PREFIX`` tokens)."""
        busy = set(self.slot_of) | self.reserved
        free = [s for s in range(self.slots) if s not in busy]
        if not free:
            raise ValueError(f"all {self.slots} slots are in use")
        limit = len(prompt) - 1  # the last prompt token is always computed: its logits are needed
        slot = free[0]  # the lowest keeps the step's bucket small, unless another holds the prompt's beginning
        best = max(free, key=lambda s: (common_prefix(self.tokens[s], prompt), -s))
        shared = min(common_prefix(self.tokens[best], prompt), limit)
        if shared >= MIN_SHARED_PREFIX or (best == slot and shared > 0):
            return best, shared
        donors = [(min(common_prefix(self.tokens[s], prompt), limit), s) for s in busy]
        shared, donor = max(donors, default=(0, -1))
        if shared >= MIN_SHARED_PREFIX:
            self._copy(donor, slot, shared)
            return slot, shared
        self.tokens[slot], self.lengths[slot] = [], 0
        return slot, 0

    def _copy(self, source: int, target: int, length: int) -> None:
        """Slot ``target`` holds the first ``length`` keys (and tokens) of slot ``source``."""
        self.keys[:, target, :, :length] = self.keys[:, source, :, :length]
        self.values[:, target, :, :length] = self.values[:, source, :, :length]
        self.tokens[target], self.lengths[target] = self.tokens[source][:length], length

    def _write(self, slot: int, ids: list[int], start: int) -> Tensor:
        """Keys of ``ids`` into ``slot`` from position ``start`` (one forward pass, the slot's own
        view); the next-token logits after the last ``(V,)``."""
        end = start + len(ids)
        view = StaticCache.over(
            self.keys[:, slot : slot + 1, :, :end], self.values[:, slot : slot + 1, :, :end], start
        )  # (layers, 1, Hkv, end, Dh)
        tokens = torch.tensor([ids], dtype=torch.long, device=self.device)  # (1, T)
        positions = torch.arange(start, end, device=self.device)[None]  # (1, T)
        out = self.model.decode(tokens, positions=positions, cache=view)
        return self.head(out.hidden[:, -1])[0]  # (V,)

    # ------------------------------------------------------------------ rows out
    def select(self, index: Tensor) -> None:
        """Keep the rows ``index`` (in that order); a row kept twice (beam search) is copied into
        a free slot. Slots left free keep their keys for a later prompt that begins the same way."""
        index = [int(i) for i in index.tolist()]
        kept = {self.slot_of[i] for i in index}
        new: list[int] = []
        placed: set[int] = set()
        for i in index:
            slot = self.slot_of[i]
            if slot in placed:  # a second copy of a row
                target = next(s for s in range(self.slots) if s not in kept and s not in self.reserved)
                self._copy(slot, target, self.lengths[slot])
                kept.add(target)
                slot = target
            placed.add(slot)
            new.append(slot)
        self.slot_of = new

    # ------------------------------------------------------------------ steps
    @torch.no_grad()
    def step(self, tokens: Tensor) -> Tensor:
        """Append ``tokens (R,)`` and return the logits ``(R, V)`` for the token after them."""
        if tokens.shape != (self.rows,):
            raise ValueError(f"step takes one token per row: expected shape ({self.rows},), got {tuple(tokens.shape)}")
        fed = tokens.tolist()
        full = [row for row, slot in enumerate(self.slot_of) if self.lengths[slot] >= self.slot_len]
        if full and self.slot_len < self.context and self.config.context is None:
            self._reserve(self.slots, self._sized(self.slot_len + 1))  # the rows' context allows more: grow
            full = []
        logits: list[Tensor | None] = [None] * self.rows
        for row in full:  # the slot's newest half (with this token) from position 0
            slot = self.slot_of[row]
            keep = self.tokens[slot][-(max(1, self.slot_len // 2) - 1) :] + [fed[row]]
            self.tokens[slot], self.lengths[slot] = [], 0
            logits[row] = self._write(slot, keep, 0)
            self.tokens[slot], self.lengths[slot] = keep, len(keep)
        stepping = [row for row in range(self.rows) if logits[row] is None]
        if stepping:
            out = self._step([self.slot_of[r] for r in stepping], [fed[r] for r in stepping])
            for i, row in enumerate(stepping):
                logits[row] = out[i]
        return torch.stack(logits)

    def _step(self, slots: list[int], fed: list[int], size: int | None = None) -> Tensor:
        """One token into each of ``slots`` through the step of the first ``size`` slots (default:
        the bucket that covers them); their logits ``(n, V)``."""
        self._reserve(self.min_rows, self.slot_len)
        if size is None:
            size = max(bucket(max(slots) + 1, self.slots), self.min_rows)
        ids = [self.pad_id] * size
        at = [self.slot_len - 1] * size  # slots without a row write padding where no kept key is
        seen = [0] * size  # ... and see one key (whatever it holds), so they cost nothing to attend
        for slot, token in zip(slots, fed):
            ids[slot], at[slot] = token, self.lengths[slot]
            seen[slot] = self.lengths[slot]
        self.write_at[:size].copy_(torch.tensor(at, dtype=torch.long))
        self.visible[:size].copy_(torch.tensor(seen, dtype=torch.long))
        step = self._steps.get(size)
        if step is None:
            step = self._steps[size] = self._make_step(size)
        logits = step(torch.tensor(ids, dtype=torch.long, device=self.device)[:, None])  # (Rb, V)
        for slot, token in zip(slots, fed):
            self.tokens[slot].append(token)
            self.lengths[slot] += 1
        for slot in range(size):  # a free slot's last position held this step's padding
            if slot not in slots and self.lengths[slot] >= self.slot_len:
                self.tokens[slot], self.lengths[slot] = self.tokens[slot][: self.slot_len - 1], self.slot_len - 1
        return logits.index_select(0, torch.tensor(slots, dtype=torch.long, device=self.device))

    def _make_step(self, size: int):
        """The step of the first ``size`` slots: ``ids (Rb, 1) -> logits (Rb, V)``, every shape fixed.
        Its compiled code is kept with the model (``_compiled``), so the next batch of the same
        shape (the next ``generate`` call) reuses it."""
        layer_keys = [self.keys[i, :size] for i in range(self.keys.shape[0])]  # (Rb, Hkv, L, Dh) each
        layer_values = [self.values[i, :size] for i in range(self.values.shape[0])]
        write_at, visible = self.write_at[:size], self.visible[:size]
        if not self.compile:
            step = _slot_step(self.model, self.head)
            return lambda ids: step(ids, layer_keys, layer_values, write_at, visible)
        run = _compiled(self.model, self.head, self.compile, self.device)
        for t in (*layer_keys, *layer_values, write_at, visible):  # one graph for every bucket
            torch._dynamo.mark_dynamic(t, 0)

        def compiled(ids: Tensor) -> Tensor:
            torch._dynamo.mark_dynamic(ids, 0)
            return run(ids, layer_keys, layer_values, write_at, visible)

        return compiled


def _slot_step(model, head):
    """``step(ids (Rb, 1), layer_keys, layer_values, write_at (Rb,), visible (Rb,)) -> logits (Rb, V)``:
    row r writes at ``write_at[r]`` (its position) and sees positions ``<= visible[r]``."""

    def step(ids: Tensor, layer_keys: list[Tensor], layer_values: list[Tensor], write_at: Tensor, visible: Tensor):
        cache = SlotCache(layer_keys, layer_values, write_at)
        key_mask = torch.arange(cache.max_len, device=ids.device)[None] <= visible[:, None]  # (Rb, L)
        out = model.decode(ids, key_mask=key_mask, positions=write_at[:, None], cache=cache)
        return head(out.hidden[:, -1])  # (Rb, V)

    return step


_COMPILED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> {(head, backend): compiled step}


def _compiled(model, head, compile: bool | str, device: torch.device):
    """The model's compiled slot step (one per model, head and backend; torch.compile keeps one
    graph per shape under it). On CPU without inductor's size and stride asserts on the inputs
    (some 600 a token: the cache's layer views). The weights are not frozen in (``DecodeBatch``'s
    static step freezes them): a frozen graph skips inductor's and AOTAutograd's on-disk caches'
    fast path, and a server's second start took 44-54 s frozen against 31 s not (2 cores, warm
    caches), with no per-token difference measurable on this noisy machine."""
    backend = "inductor" if compile is True else compile
    steps = _COMPILED.setdefault(model, {})
    key = (id(head), backend)
    if key not in steps:
        options = {"size_asserts": False} if compile is True and device.type == "cpu" else None
        steps[key] = torch.compile(_slot_step(model, head), fullgraph=True, backend=backend, options=options)
    return steps[key]


def forget_compiled(model) -> None:
    """Drop the compiled slot steps kept for ``model`` (after changing its weights)."""
    _COMPILED.pop(model, None)
