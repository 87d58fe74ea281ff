"""Decision Transformer (Chen et al., 2021): offline RL as conditional sequence modelling.

A trajectory becomes tokens ``R_1, s_1, a_1, R_2, s_2, a_2, ...``: the return still to be
earned (return-to-go), the state, the action. Each kind has its own linear embedding, every
token of time step t gets the same learned timestep embedding (the positions of this
model), and a causal stack reads them. The action ``a_t`` is predicted from the hidden
state at the token ``s_t``, which has seen ``R_1..R_t``, ``s_1..s_t`` and ``a_1..a_{t-1}``.
At evaluation the first return-to-go is the return we ask for; after each step the reward
earned is subtracted, and the model acts as the data did when that much was still to come.

Dimension names: B batch, K context (time steps), 3K tokens, S state size, A actions,
D model width.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..config import TransformerConfig, register_model, register_preset
from ..nn import TransformerStack, make_positional
from ..nn.norm import make_norm
from ..nn.stack import StackOutput
from .init import init_gpt2

TOKENS_PER_STEP = 3  # return-to-go, state, action


@dataclass
class DecisionTransformerConfig(TransformerConfig):
    """A GPT-style causal stack over (return-to-go, state, action) tokens; discrete actions.

    ``positional`` is ``none`` by default, as in the paper: order enters through the
    timestep embedding (``max_timestep`` rows) and the causal mask. ``max_len`` must cover
    the ``3 * context_len`` tokens when another positional kind is chosen.
    """

    model_type = "decision-transformer"
    state_dim: int = 4
    n_actions: int = 2
    context_len: int = 20
    max_timestep: int = 500
    num_layers: int = 3
    d_model: int = 64
    num_heads: int = 2
    d_ff: int = 256
    dropout: float = 0.1
    attention_dropout: float = 0.1
    ffn: str = "gelu"
    norm_first: bool = True
    positional: str = "none"
    max_len: int = 60
    init_std: float = 0.02

    def validate(self) -> None:
        super().validate()
        name = type(self).__name__
        for field_name in ("state_dim", "n_actions", "context_len", "max_timestep"):
            if getattr(self, field_name) <= 0:
                raise ValueError(f"{name}.{field_name} must be positive, got {getattr(self, field_name)}")
        if self.n_actions < 2:
            raise ValueError(f"{name}.n_actions must be at least 2, got {self.n_actions}")
        if self.max_len < TOKENS_PER_STEP * self.context_len:
            raise ValueError(
                f"{name}: max_len ({self.max_len}) is below the {TOKENS_PER_STEP * self.context_len} tokens of "
                f"context_len={self.context_len} steps"
            )


@register_model(DecisionTransformerConfig)
class DecisionTransformer(nn.Module):
    """``forward(states, actions, returns_to_go, timesteps, key_mask) -> action logits (B, K, A)``."""

    def __init__(self, config: DecisionTransformerConfig):
        super().__init__()
        self.config = config
        d = config.d_model
        self.embed_timestep = nn.Embedding(config.max_timestep, d)
        self.embed_return = nn.Linear(1, d)
        self.embed_state = nn.Linear(config.state_dim, d)
        self.embed_action = nn.Embedding(config.n_actions, d)
        self.embed_norm = make_norm(config.norm, d, config.norm_eps, config.bias)
        positional = make_positional(
            config.positional,
            d,
            config.num_heads,
            config.max_len,
            config.rope_base,
            config.head_dim,
            bidirectional=False,
            rope_scaling=config.rope_scaling,
        )
        self.stack = TransformerStack(config.layer_spec(), config.num_layers, positional, causal=True)
        self.head = nn.Linear(d, config.n_actions)
        init_gpt2(self, config.num_layers, config.init_std)
        nn.init.normal_(self.embed_timestep.weight, std=config.init_std)
        nn.init.normal_(self.embed_action.weight, std=config.init_std)

    def _check(self, states: Tensor, actions: Tensor, returns_to_go: Tensor, timesteps: Tensor) -> None:
        cfg = self.config
        if states.dim() != 3 or states.shape[-1] != cfg.state_dim:
            raise ValueError(f"states must have shape (batch, steps, {cfg.state_dim}), got {tuple(states.shape)}")
        b, k = states.shape[:2]
        if k > cfg.context_len:
            raise ValueError(f"{k} steps exceed the model's context_len {cfg.context_len}")
        for name, t, want in (
            ("actions", actions, (b, k)),
            ("returns_to_go", returns_to_go, (b, k, 1)),
            ("timesteps", timesteps, (b, k)),
        ):
            if tuple(t.shape) != want:
                raise ValueError(f"{name} must have shape {want} to match states, got {tuple(t.shape)}")

    def embed(self, states: Tensor, actions: Tensor, returns_to_go: Tensor, timesteps: Tensor) -> Tensor:
        """Interleave the three token kinds: ``(B, K, ...)`` -> ``(B, 3K, D)`` as R_1, s_1, a_1, R_2, ..."""
        self._check(states, actions, returns_to_go, timesteps)
        steps = timesteps.clamp(0, self.config.max_timestep - 1)
        time = self.embed_timestep(steps)  # (B, K, D)
        tokens = torch.stack(
            (
                self.embed_return(returns_to_go) + time,
                self.embed_state(states) + time,
                self.embed_action(actions) + time,
            ),
            dim=2,
        )  # (B, K, 3, D)
        b, k = states.shape[:2]
        return self.embed_norm(tokens.reshape(b, TOKENS_PER_STEP * k, -1))  # (B, 3K, D)

    def decode(
        self,
        states: Tensor,
        actions: Tensor,
        returns_to_go: Tensor,
        timesteps: Tensor,
        key_mask: Tensor | None = None,
        need_weights: bool = False,
    ) -> StackOutput:
        """The stack's output over all 3K tokens; ``key_mask (B, K)`` True on real steps."""
        x = self.embed(states, actions, returns_to_go, timesteps)  # (B, 3K, D)
        if key_mask is not None:
            key_mask = key_mask.repeat_interleave(TOKENS_PER_STEP, dim=1)  # (B, 3K)
        return self.stack(x, key_mask=key_mask, need_weights=need_weights)

    def forward(
        self,
        states: Tensor,
        actions: Tensor,
        returns_to_go: Tensor,
        timesteps: Tensor,
        key_mask: Tensor | None = None,
    ) -> Tensor:
        """states ``(B, K, S)`` float, actions ``(B, K)`` int (``a_t`` is not seen when predicting it),
        returns_to_go ``(B, K, 1)`` (scaled), timesteps ``(B, K)`` int -> action logits ``(B, K, A)``."""
        hidden = self.decode(states, actions, returns_to_go, timesteps, key_mask).hidden  # (B, 3K, D)
        b, k = states.shape[:2]
        state_tokens = hidden.reshape(b, k, TOKENS_PER_STEP, -1)[:, :, 1]  # (B, K, D) at each s_t
        return self.head(state_tokens)


register_preset(
    "decision-transformer",
    DecisionTransformerConfig(),
    "Decision Transformer: 3 layers, 64 wide, 20-step context (60 tokens); shaped for CartPole-v1, "
    "the dt-* recipes size its state and actions to their data",
)
