"""The explorer's JSON endpoints, over a live server: the weights the page receives are the weights
``attention(..., need_weights=True)`` computes for the same input, every endpoint answers for every
family, the stepper goes through the decoding engine, and bad input is a one-line 400."""

from __future__ import annotations

import pytest
import torch

import attentive
from attentive.audio import log_mel_spectrogram
from attentive.decode.search import beam_search
from attentive.decode.transcriber import greedy_transcribe
from attentive.explore import weights as weights_module

from explore_support import LM_TEXT, SOURCE_TEXT, digit_png, post, tone_wav


def _blocks(base: str, summary: dict, stack: str, layers: int, **extra) -> list[list]:
    """Every layer of ``stack`` as the page receives it (all heads, all rows and keys)."""
    store = next(s for s in summary["stacks"] if s["name"] == stack)
    out = []
    for layer in range(layers):
        status, block = post(
            base,
            "attention",
            {
                "id": summary["id"],
                "stack": stack,
                "layer": layer,
                "q0": 0,
                "q1": len(store["q_tokens"]),
                "k0": 0,
                "k1": len(store["k_tokens"]),
                **extra,
            },
        )
        assert status == 200, block
        out.append(block["weights"])
    return out


def _want(weights: list[torch.Tensor]) -> list[list]:
    return [w[0].float().tolist() for w in weights]  # batch row 0, (H, Tq, Tk) per layer


# ----------------------------------------------------------------------------- exact weights


@torch.no_grad()
def test_language_model_weights_are_attentions_exact_weights(server, lm):
    base = f"{server}/lm"
    status, summary = post(base, "analyze", {"text": LM_TEXT})
    assert status == 200, summary
    ids = torch.tensor([lm.tokenizer.encode(LM_TEXT)])
    want = lm.model.decode(ids, need_weights=True).self_attentions
    assert summary["tokens"] == [lm.tokenizer.decode([i]).replace(" ", "▁") for i in ids[0].tolist()]
    assert _blocks(base, summary, "stack", 2) == _want(want)  # exactly the same numbers


@torch.no_grad()
def test_translation_weights_are_exact_for_encoder_decoder_and_cross(server, translation):
    base = f"{server}/translation"
    status, summary = post(base, "analyze", {"text": SOURCE_TEXT})
    assert status == 200, summary
    model, tok = translation.model, translation.tokenizer
    src = torch.tensor([tok.encode(SOURCE_TEXT)])
    out = beam_search(model, src, translation.search_config, bos_id=tok.bos_id, eos_id=tok.eos_id).tokens[0]
    assert summary["translation"] == tok.decode(out)
    valid = src != model.config.pad_id
    enc = model.encode(src, valid, need_weights=True)
    dec = model.decode(torch.tensor([[tok.bos_id, *out]]), enc.hidden, valid, need_weights=True)
    assert _blocks(base, summary, "encoder", 2) == _want(enc.self_attentions)
    assert _blocks(base, summary, "decoder", 3) == _want(dec.self_attentions)
    assert _blocks(base, summary, "cross", 3) == _want(dec.cross_attentions)
    mean = _blocks(base, summary, "cross", 1, head="mean")[0][0]
    torch.testing.assert_close(torch.tensor(mean), dec.cross_attentions[0][0].float().mean(0))


@torch.no_grad()
def test_vision_weights_maps_and_rollout_come_from_the_model(server, vision):
    from attentive.viz.rollout import attention_rollout

    base = f"{server}/vision"
    status, summary = post(base, "analyze/file", digit_png())
    assert status == 200, summary
    image = vision.read_image(digit_png())[None]
    out = vision.model.encode(image, need_weights=True)
    assert _blocks(base, summary, "encoder", 3) == _want(out.self_attentions)
    assert summary["tokens"][0] == "[CLS]" and len(summary["tokens"]) == 17
    cls = torch.stack([w[0, :, 0, 1:] for w in out.self_attentions])  # (L, H, 16)
    torch.testing.assert_close(torch.tensor(summary["cls_heads"]), cls)
    torch.testing.assert_close(torch.tensor(summary["rollout"]), attention_rollout(out.self_attentions)[0, 0, 1:])
    probs = vision.model.head(out.hidden[:, 0]).softmax(-1)[0]
    assert summary["prediction"][0]["class"] == str(int(probs.argmax()))


@torch.no_grad()
def test_encoder_and_speech_weights_are_exact(server, encoder, speech):
    status, summary = post(f"{server}/encoder", "analyze", {"text": LM_TEXT})
    assert status == 200, summary
    want = encoder.model.encode(torch.tensor([encoder.tokenizer.encode(LM_TEXT)]), need_weights=True)
    assert _blocks(f"{server}/encoder", summary, "stack", 2) == _want(want.self_attentions)

    base = f"{server}/speech"
    status, summary = post(base, "analyze/file", tone_wav())
    assert status == 200, summary
    audio, seconds = speech.read_audio(tone_wav())
    assert seconds == pytest.approx(1.5)
    features = log_mel_spectrogram(audio, 80)[None]
    tokens = greedy_transcribe(speech.model, features, 200)[0]
    enc = speech.model.encode(features, need_weights=True)
    dec = speech.model.decode(torch.tensor([[*speech.config.start_ids, *tokens]]), enc.hidden, need_weights=True)
    assert summary["audio_positions"] == 75 and summary["spectrogram"]["frames"] == 150
    assert _blocks(base, summary, "decoder", 2) == _want(dec.self_attentions)
    assert _blocks(base, summary, "cross", 2) == _want(dec.cross_attentions)
    status, block = post(
        base,
        "attention",
        {"id": summary["id"], "stack": "encoder", "layer": 0, "q0": 10, "q1": 20, "k0": 0, "k1": 1500, "head": 2},
    )
    assert status == 200 and block["weights"] == [enc.self_attentions[0][0, 2, 10:20].tolist()]


def test_a_long_input_keeps_each_querys_strongest_links_exactly(server, lm, monkeypatch):
    """Past the dense limit only each row's strongest links are kept (and sent): still exact."""
    monkeypatch.setattr(weights_module, "DENSE_LIMIT", 0)
    text = "a long input, kept sparse."
    status, summary = post(f"{server}/lm", "analyze", {"text": text})
    assert status == 200 and summary["stacks"][0]["dense"] is False
    status, block = post(
        f"{server}/lm",
        "attention",
        {"id": summary["id"], "stack": "stack", "layer": 1, "q0": 3, "q1": 9, "k0": 0, "k1": 10},
    )
    assert status == 200 and "weights" not in block
    with torch.no_grad():
        want = lm.model.decode(torch.tensor([lm.tokenizer.encode(text)]), need_weights=True).self_attentions[1][0]
    values, index = want[:, 3:9].topk(16, dim=-1)
    assert block["top_values"] == values.tolist() and block["top_index"] == index.tolist()


# ----------------------------------------------------------------------------- every endpoint, every family


def test_models_describe_each_family(server):
    views = {
        "lm": ["head", "model", "generate", "lens", "ideas"],
        "translation": ["head", "model", "cross", "beams", "ideas"],
        "vision": ["head", "model", "vision", "ideas"],
        "encoder": ["head", "model", "ideas"],
        "speech": ["head", "model", "cross", "ideas"],
    }
    for family, want in views.items():
        status, answer = post(f"{server}/{family}", "models", {})
        assert status == 200
        (info,) = answer["models"]
        assert info["views"] == want and info["defaults"]["window"] == 64


def _analysis(server: str, family: str) -> dict:
    if family == "vision":
        return post(f"{server}/vision", "analyze/file", digit_png())[1]
    if family == "speech":
        return post(f"{server}/speech", "analyze/file", tone_wav())[1]
    return post(f"{server}/{family}", "analyze", {"text": SOURCE_TEXT if family == "translation" else LM_TEXT})[1]


@pytest.mark.parametrize("family", ["lm", "translation", "vision", "encoder", "speech"])
def test_every_idea_panel_shows_the_real_model(server, family):
    summary = _analysis(server, family)
    ref = {"id": summary["id"]}
    base = f"{server}/{family}"
    answers = {}
    for name in ("embedding", "positions", "attention_steps", "heads", "residual", "permutation", "masks"):
        status, answers[name] = post(base, f"ideas/{name}", ref)
        assert status == 200, (name, answers[name])
        assert answers[name]["idea"] == name
    if family == "vision":
        assert answers["embedding"]["available"] is False and answers["masks"]["mode"] == "none"
    else:
        assert answers["embedding"]["equal"] is True  # one-hot x E is the lookup, number for number
        assert answers["masks"]["masked_weight_max"] == 0.0
        assert answers["masks"]["causal"] is (family in ("lm", "speech"))
    steps = answers["attention_steps"]["max_difference"]
    assert steps["weights"] < 1e-5 and steps["output"] < 1e-5 and steps["tap"] == 0.0
    assert abs(sum(answers["attention_steps"]["weights"]) - 1) < 1e-5
    assert answers["permutation"]["off"]["max_difference"] < 1e-4  # permutation-equivariant without positions
    assert answers["permutation"]["on"]["max_difference"] > 1e-3  # positions break it
    layers = answers["residual"]["layers"]
    for a, b in zip(layers, layers[1:]):  # a layer's output is the next layer's input
        assert a["points"][-1]["tokens"] == pytest.approx(b["points"][0]["tokens"], rel=1e-5)
    assert answers["heads"]["overlap"][0][0] == pytest.approx(1.0, abs=1e-5)


def test_idea_settings_are_checked(server):
    summary = _analysis(server, "lm")
    status, answer = post(f"{server}/lm", "ideas/attention_steps", {"id": summary["id"], "layer": 7})
    assert status == 400 and answer["error"] == "layer 7 is out of range (0..1)"
    status, answer = post(f"{server}/lm", "ideas/masks", {"id": summary["id"], "colour": "red"})
    assert status == 400 and "takes no settings" in answer["error"]
    status, answer = post(f"{server}/lm", "ideas/attention_steps", {"id": summary["id"], "head": "two"})
    assert status == 400 and answer["error"] == "head must be an integer, got 'two'"


def test_logit_lens_reads_each_layer_through_the_final_norm_and_head(server, lm):
    summary = _analysis(server, "lm")
    status, lens = post(f"{server}/lm", "lens", {"id": summary["id"], "position": 4})
    assert status == 200 and len(lens["layers"]) == 2 and lens["final_norm"] is True
    with torch.no_grad():
        logits = lm.model(torch.tensor([lm.tokenizer.encode(LM_TEXT)]))[0, 4].softmax(-1)
    top = logits.topk(5)
    assert [t["id"] for t in lens["layers"][-1]["top"]] == top.indices.tolist()  # the last layer is the model
    assert [t["p"] for t in lens["layers"][-1]["top"]] == pytest.approx(top.values.tolist(), abs=1e-6)
    assert lens["next"]["token"] == LM_TEXT[5].replace(" ", "▁")


def test_beam_hypotheses_lead_to_the_translation(server, translation):
    summary = _analysis(server, "translation")
    beams = summary["beams"]
    assert beams and all(len(step["live"]) == 3 for step in beams[:-1])  # at the length limit only ends are left
    assert [len(h["tokens"]) for h in beams[0]["live"]] == [1, 1, 1]
    best = max(beams[-1]["finished"], key=lambda h: h["score"])
    assert (
        best["text"]
        == summary["translation"]
        == translation.translator.translate([SOURCE_TEXT], translation.search_config)[0]
    )


def test_stepper_goes_through_the_engine_one_token_at_a_time(server, lm):
    settings = {"temperature": 0.9, "top_k": 6, "top_p": 0.95, "seed": 3}
    status, started = post(f"{server}/lm", "generate/start", {"text": "the cat", **settings})
    assert status == 200 and started["tokens"] == list("the▁cat")
    session, taken = started["session"], []
    for step in range(5):
        status, answer = post(f"{server}/lm", "generate/step", {"session": session, "layer": 1, **settings})
        assert status == 200, answer
        assert len(answer["tokens"]) == 7 + step + 1  # one token per step
        taken.append(answer["token"]["id"])
        bars = answer["bars"]
        assert sum(b["chosen"] for b in bars) == 1 and sum(b["p"] for b in bars) <= 1 + 1e-6
        assert len([b for b in bars if b["p"] > 0]) <= 6  # top-k 6 left six tokens
        att = answer["attention"]
        assert att["layer"] == 1 and att["keys"] == len(answer["tokens"])  # the new token over every token so far
        for row in att["weights"]:
            assert sum(row) == pytest.approx(1.0, abs=1e-5)
    same = attentive.generate(lm.model, lm.tokenizer, "the cat", max_new_tokens=5, **settings)
    assert taken == same.tokens[0]  # the stepper samples what generate() samples
    ids = torch.tensor([lm.tokenizer.encode("the cat") + taken])
    with torch.no_grad():
        full = lm.model.decode(ids, need_weights=True).self_attentions[1][0, :, -1]  # (H, T) recomputed
    torch.testing.assert_close(torch.tensor(att["weights"]), full, atol=1e-5, rtol=1e-4)
    status, layer0 = post(f"{server}/lm", "generate/attention", {"session": session, "layer": 0})
    assert status == 200 and layer0["layer"] == 0 and layer0["keys"] == 12
    status, greedy = post(f"{server}/lm", "generate/step", {"session": session, "temperature": 0})
    with torch.no_grad():
        want = int(lm.model(torch.tensor([lm.tokenizer.encode("the cat") + taken]))[0, -1].argmax())
    assert status == 200 and greedy["token"]["id"] == want  # new settings from the next token on


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "family, path, body, message",
    [
        ("lm", "analyze", {"text": ""}, "enter some text first"),
        ("lm", "analyze", {"text": "   "}, "enter some text first"),
        ("lm", "analyze", {"text": "a" * 65}, "the text is 65 tokens; the explorer takes at most 64"),
        ("lm", "analyze", {"text": "x" * 20_001}, "the text has 20,001 characters; the explorer takes at most 20,000"),
        ("lm", "analyze", {"text": "Caps"}, "characters not in the vocabulary: 'C'"),
        ("lm", "analyze", {"text": 5}, "text must be a string, got 5"),
        ("lm", "analyze", b"{not json", "the request body is not JSON"),
        ("lm", "analyze", b"[1, 2]", "the request body must be a JSON object"),
        ("lm", "attention", {"id": "nope"}, "that input is no longer in the explorer's cache"),
        ("lm", "lens", {"text": "the cat", "position": 99}, "position 99 is out of range: the input has 7 tokens"),
        ("lm", "generate/step", {"session": "s999"}, "no generation 's999' is open"),
        ("lm", "generate/start", {"text": "the cat", "temperature": -1}, "temperature must be a finite number >= 0"),
        ("lm", "generate/start", {"text": "the cat", "top_p": 0}, "top_p must be in (0, 1]"),
        ("lm", "ideas/nothing", {"text": "the cat"}, None),
        ("translation", "lens", {"text": "ein hund"}, "tiny-translation is a translation model"),
        ("vision", "analyze", {"text": "hello"}, "tiny-vit reads image: upload a file instead of text"),
        ("vision", "analyze/file", b"this is not an image", "the file is not an image (PNG, JPEG, ... expected)"),
        ("vision", "analyze/file", b"", "the image is empty"),
        ("speech", "analyze/file", b"RIFF....WAVEfmt not really", "the file is not PCM WAV audio"),
        ("lm", "analyze/file", b"abc", "tiny-lm reads text, not files"),
    ],
)
def test_bad_input_is_a_one_line_400(server, family, path, body, message):
    status, answer = post(f"{server}/{family}", path, body)
    if message is None:  # no such endpoint
        assert status in (404, 405)
        return
    assert status == 400, answer
    assert message in answer["error"] and "\n" not in answer["error"]


def test_a_model_can_be_named_and_a_wrong_name_is_an_error(server):
    status, answer = post(f"{server}/lm", "analyze", {"text": "the cat", "model": "tiny-lm"})
    assert status == 200
    status, answer = post(f"{server}/lm", "analyze", {"text": "the cat", "model": "gpt-5"})
    assert status == 400 and answer["error"] == "no model 'gpt-5' is loaded; loaded: tiny-lm"


def test_a_finished_generation_shows_the_last_fed_tokens_attention(server, monkeypatch):
    from attentive.explore import stepper

    monkeypatch.setattr(stepper, "MAX_STEPS", 2)
    status, started = post(f"{server}/lm", "generate/start", {"text": "the cat", "temperature": 0})
    session = started["session"]
    first = post(f"{server}/lm", "generate/step", {"session": session, "temperature": 0})[1]
    assert first["finish_reason"] is None and first["attention"]["keys"] == 8  # the new token was fed
    assert first["attention"]["tokens"] == first["tokens"] and first["attention_query"] == 7
    last = post(f"{server}/lm", "generate/step", {"session": session, "temperature": 0})[1]
    assert last["finish_reason"] == "length" and len(last["tokens"]) == 9
    assert last["attention"]["keys"] == 8 and last["attention"]["tokens"] == last["tokens"][:-1]  # not fed
    status, answer = post(f"{server}/lm", "generate/step", {"session": session})
    assert status == 400 and "this generation has finished (length)" in answer["error"]


def test_models_answers_get_too(server):
    import json
    import urllib.request

    with urllib.request.urlopen(f"{server}/speech/api/models", timeout=30) as response:
        (info,) = json.loads(response.read())["models"]
    assert info["family"] == "speech" and info["input"] == "audio" and info["max_bytes"] == 16 * 1024 * 1024


def test_the_static_export_answers_what_the_page_first_asks_for_files_too(vision, speech):
    from attentive.explore.export import collect, request_key

    for subject, data in ((vision, digit_png()), (speech, tone_wav())):
        out = collect(subject, data)
        summary = out["analysis"]
        assert "text" not in out and summary["family"] == subject.family
        first = {
            "model": subject.name,
            "id": summary["id"],
            "stack": summary["stacks"][0]["name"],
            "layer": 0,
            "q0": 0,
            "q1": min(64, len(summary["stacks"][0]["q_tokens"])),
            "k0": 0,
            "k1": min(64, len(summary["stacks"][0]["k_tokens"])),
        }
        assert request_key("attention", first) in out["answers"]
        assert request_key("ideas/masks", {"model": subject.name, "id": summary["id"]}) in out["answers"]
