"""Special tokens, defined once: every tokenizer we train puts them at ids 0-3.

Fixed ids let models, collate functions and losses agree on padding and sequence
boundaries without asking the tokenizer (e.g. ``ignore_index=PAD_ID``).
"""

from __future__ import annotations

PAD = "<pad>"
BOS = "<s>"
EOS = "</s>"
UNK = "<unk>"

PAD_ID = 0
BOS_ID = 1
EOS_ID = 2
UNK_ID = 3

# In id order: SPECIAL_TOKENS[i] has id i.
SPECIAL_TOKENS: tuple[str, ...] = (PAD, BOS, EOS, UNK)
SPECIAL_IDS: dict[str, int] = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
