"""SmolLM2-135M-Instruct (GGUF, Q4_1) in attentive's DecoderLM: parity with transformers' LLaMA.

Both models get the same dequantised float32 weights (read once per module). Parity: logits
over a prompt of >= 64 tokens, 32 greedy tokens without a cache (teacher-forced argmax) and
with the KV cache (dynamic and static), and the chat template rendered like transformers does.
"""

import io
from contextlib import redirect_stdout

import pytest
import torch

from pretrained_paths import need_smollm2

transformers = pytest.importorskip("transformers")

PROMPT = (
    "The history of the Roman Empire spans many centuries. It began when Augustus became the first "
    "emperor in 27 BC and, in the West, ended in 476 AD. During this time the empire grew to include "
    "lands around the Mediterranean Sea, and its roads, laws and language shaped Europe for the next "
    "thousand years."
)
NEW_TOKENS = 32


def no_init():
    """transformers' context that skips random init (the weights are overwritten anyway)."""
    try:
        from transformers.initialization import no_init_weights  # transformers >= 5
    except ImportError:
        from transformers.modeling_utils import no_init_weights
    return no_init_weights()


@pytest.fixture(scope="module")
def gguf_model():
    from attentive.interop.gguf import load_gguf_llama

    path = need_smollm2()
    return path, load_gguf_llama(path)


@pytest.fixture(scope="module")
def ours(gguf_model):
    from attentive.interop.pretrained import pretrained_from_gguf

    path, gg = gguf_model
    return pretrained_from_gguf(gg, str(path))


@pytest.fixture(scope="module")
def reference(gguf_model, ours):
    """HF LLaMA on the same weights; its 32 greedy tokens; both models' logits over prompt + those tokens."""
    _, gg = gguf_model
    with no_init():
        hf = transformers.LlamaForCausalLM(transformers.LlamaConfig(**gg.config.to_hf()))
    hf.load_state_dict(gg.state_dict, strict=True)
    hf.eval()
    prompt = ours.tokenizer.encode(PROMPT)
    assert len(prompt) >= 64
    with torch.no_grad():
        out = hf.generate(torch.tensor([prompt]), max_new_tokens=NEW_TOKENS, do_sample=False, pad_token_id=0)
        generated = out[0, len(prompt) :].tolist()
        assert len(generated) == NEW_TOKENS  # the prompt's continuation does not stop early
        full = torch.tensor([prompt + generated])
        hf_logits = hf(full).logits  # (1, P + 32, V)
        our_logits = ours.model(full)
    return {"prompt": prompt, "generated": generated, "hf_logits": hf_logits, "our_logits": our_logits}


def test_config_is_smollm2_shape(ours):
    c = ours.config
    assert (c.num_layers, c.d_model, c.num_heads, c.num_kv_heads, c.d_ff, c.vocab_size) == (30, 576, 9, 3, 1536, 49152)
    assert (c.rope_base, c.norm_eps, c.ffn, c.norm, c.tie_embeddings) == (1e5, 1e-5, "swiglu", "rmsnorm", True)
    assert ours.model.head.weight is ours.model.embed.weight


def test_logits_match_hf_llama(reference):
    diff = (reference["hf_logits"] - reference["our_logits"]).abs().max().item()
    print(f"SmolLM2 logits max abs diff over {reference['hf_logits'].shape[1]} tokens: {diff:.3g}")
    assert reference["hf_logits"].shape[1] >= 64 + NEW_TOKENS
    assert diff <= 1e-4


def test_greedy_tokens_without_cache_match(reference):
    """Greedy decoding without a cache recomputes the prefix each step; in a causal model that
    step's logits are the teacher-forced logits at the same position."""
    start = len(reference["prompt"]) - 1
    ours = reference["our_logits"][0, start : start + NEW_TOKENS].argmax(-1).tolist()
    assert ours == reference["generated"]


@pytest.mark.parametrize("cache", ["dynamic", "static"])
def test_greedy_tokens_with_kv_cache_match(ours, reference, cache):
    from attentive.decode import generate

    out = generate(
        ours.model,
        ours.tokenizer,
        reference["prompt"],
        max_new_tokens=NEW_TOKENS,
        temperature=0.0,
        cache=cache,
        stop_tokens=(),
    )
    assert out.tokens[0] == reference["generated"]


def test_chat_template_matches_transformers_and_answers(gguf_model, ours):
    from attentive.decode import generate
    from attentive.text.chat import chat_prompt

    _, gg = gguf_model
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    ref = gg.tokenizer.apply_chat_template(messages, add_generation_prompt=True)
    ref = ref["input_ids"] if not isinstance(ref, list) else ref
    ids = chat_prompt(ours.tokenizer, "What is the capital of France?")
    assert ids == ref
    out = generate(ours.model, ours.tokenizer, ids, max_new_tokens=12, temperature=0.0)
    assert "Paris" in out.text


def test_cli_generate_model_chat(ours, monkeypatch):
    """``attentive generate --model X --chat "..."`` wiring (the model itself comes from the fixture)."""
    import attentive.interop.resolve as resolve
    from attentive.cli.main import main

    monkeypatch.setattr(resolve, "from_pretrained", lambda spec, **kw: ours)  # already loaded
    buf = io.StringIO()
    with redirect_stdout(buf):
        code = main(
            [
                "generate",
                "--model",
                "smollm2.gguf",
                "--chat",
                "--greedy",
                "--max-new-tokens",
                "12",
                "What is the capital of France?",
            ]
        )
    assert code == 0 and "Paris" in buf.getvalue()


def test_save_and_reload_keeps_tokenizer_and_chat_template(ours, tmp_path):
    """The checkpoint format round trip, on a tiny LLaMA-shaped model with SmolLM2's tokenizer."""
    import attentive
    from attentive.interop.pretrained import Pretrained
    from attentive.text.chat import chat_prompt

    tiny = attentive.build("llama-tiny", vocab_size=ours.tokenizer.vocab_size).eval()
    Pretrained(tiny, ours.tokenizer, "test", "gguf").save(tmp_path)
    back = attentive.from_pretrained(tmp_path, optimize=False)
    assert back.format == "attentive" and back.config == tiny.config
    assert back.tokenizer.chat_template == ours.tokenizer.chat_template
    assert back.tokenizer.eos_ids == ours.tokenizer.eos_ids == [2]
    assert chat_prompt(back.tokenizer, "Hi there") == chat_prompt(ours.tokenizer, "Hi there")
    ids = torch.tensor([ours.tokenizer.encode("Grüße, world 2024")])
    assert torch.equal(back.model(ids), tiny(ids))


@pytest.mark.parametrize(
    "scaling",
    [
        {"rope_type": "linear", "factor": 2.0},
        {"rope_type": "yarn", "factor": 2.0},
        {
            "rope_type": "llama3",
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 2048,
        },
    ],
    ids=lambda s: s["rope_type"],
)
def test_rope_scaling_logits_match_hf_llama(gguf_model, reference, scaling):
    """``rope_scaling=`` on SmolLM2 (through the loader's override) gives HF's LlamaForCausalLM
    logits with the same rope_scaling, and changes them (so the test could fail)."""
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

    from attentive.interop.pretrained import pretrained_from_gguf

    path, gg = gguf_model
    scaled = pretrained_from_gguf(gg, str(path), {"rope_scaling": dict(scaling)})
    assert scaled.config.rope_scaling == scaling
    with no_init():
        hf = transformers.LlamaForCausalLM(transformers.LlamaConfig(**gg.config.to_hf()))
    hf.load_state_dict(gg.state_dict, strict=True)
    hf.model.rotary_emb = LlamaRotaryEmbedding(
        transformers.LlamaConfig(**gg.config.to_hf(), rope_scaling=dict(scaling))
    )
    hf.eval()
    ids = torch.tensor([reference["prompt"]])
    with torch.no_grad():
        want, got = hf(ids).logits, scaled.model(ids)
    diff = (want - got).abs().max().item()
    print(f"SmolLM2 {scaling['rope_type']} logits max abs diff: {diff:.3g}")
    assert diff <= 1e-4
    assert (got - reference["our_logits"][:, : ids.shape[1]]).abs().max() > 1e-2  # the scaling did something


def test_passkey_is_retrieved_well_within_the_context(ours):
    from attentive.evaluate.passkey import passkey_prompts, passkey_retrieved

    for prompt in passkey_prompts(ours.tokenizer, 300, 2, seed=0):
        retrieved, chosen = passkey_retrieved(ours.model, prompt)
        assert retrieved, (prompt.key, ours.tokenizer.decode(chosen))
