"""all-MiniLM-L6-v2 (a HF BERT folder) in attentive's Encoder: parity with transformers.BertModel.

Hidden states of a padded batch, and normalised mean-pooled sentence embeddings (what
sentence-transformers computes: Transformer -> mean pooling over real tokens -> L2 norm).
"""

import io
from contextlib import redirect_stdout

import pytest
import torch
import torch.nn.functional as F

from pretrained_paths import need_minilm

transformers = pytest.importorskip("transformers")

SENTENCES = [
    "A man is eating food.",
    "Someone is having a meal.",
    "The quick brown fox jumps over the lazy dog near the river bank, while the farmer watches.",
    "Hi",
    "Ein Satz auf Deutsch, mit Umlauten: äöü.",
]


@pytest.fixture(scope="module")
def ours():
    from attentive import from_pretrained

    return from_pretrained(need_minilm())


@pytest.fixture(scope="module")
def reference():
    folder = str(need_minilm())
    model = transformers.BertModel.from_pretrained(folder).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    batch = tokenizer(SENTENCES, padding=True, truncation=True, max_length=256, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state  # (B, T, D)
    weights = batch["attention_mask"][..., None].float()
    pooled = F.normalize((hidden * weights).sum(1) / weights.sum(1), dim=-1)  # (B, D)
    return {"batch": batch, "hidden": hidden, "embeddings": pooled}


def test_config_from_sentence_transformers_folder(ours):
    c = ours.config
    assert (ours.kind, ours.format) == ("encoder", "huggingface")
    assert (c.num_layers, c.d_model, c.num_heads, c.d_ff, c.norm_eps, c.norm_first) == (6, 384, 12, 1536, 1e-12, False)
    assert (c.pooling, c.normalize, c.ffn, c.num_token_types) == ("mean", True, "gelu", 2)


def test_tokenizer_matches_transformers(ours, reference):
    mask = reference["batch"]["attention_mask"].bool()
    ids = ours.tokenizer.encode_batch(SENTENCES, add_special_tokens=True)
    assert ids == [row[m].tolist() for row, m in zip(reference["batch"]["input_ids"], mask, strict=True)]


def test_hidden_states_match_bert_model(ours, reference):
    batch = reference["batch"]
    mask = batch["attention_mask"].bool()
    assert not mask.all()  # the batch has padding
    with torch.no_grad():
        hidden = ours.model(batch["input_ids"], mask, batch["token_type_ids"])
    diff = (hidden - reference["hidden"])[mask].abs().max().item()
    print(f"MiniLM last hidden state max abs diff: {diff:.3g}")
    assert diff <= 1e-5


def test_sentence_embeddings_match(ours, reference):
    from attentive.models.encoder import embed_texts

    ours_batched = embed_texts(ours.model, ours.tokenizer, SENTENCES)  # one padded batch
    cosine = F.cosine_similarity(ours_batched, reference["embeddings"]).min().item()
    print(f"MiniLM sentence embedding min cosine: {cosine:.7f}")
    assert cosine >= 0.99999
    alone = embed_texts(ours.model, ours.tokenizer, SENTENCES[3:4])  # no padding: same vector
    assert torch.allclose(alone[0], ours_batched[3], atol=1e-5)
    assert torch.allclose(ours_batched.norm(dim=-1), torch.ones(len(SENTENCES)), atol=1e-5)


def test_save_and_reload(ours, tmp_path):
    import json

    from attentive import from_pretrained
    from attentive.models.encoder import embed_texts

    ours.save(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == "encoder"
    back = from_pretrained(tmp_path)
    assert back.format == "attentive" and back.config == ours.config
    before = embed_texts(ours.model, ours.tokenizer, SENTENCES)
    assert torch.equal(embed_texts(back.model, back.tokenizer, SENTENCES), before)


def test_cli_embed_prints_similarities_and_vectors():
    from attentive.cli.main import main

    buf = io.StringIO()
    with redirect_stdout(buf):
        assert main(["embed", "--model", str(need_minilm()), *SENTENCES[:3]]) == 0
    rows = buf.getvalue().splitlines()
    assert len(rows) == 4 and rows[1].split()[1] == "1.000"
    assert float(rows[1].split()[2]) > 0.5 > float(rows[1].split()[3])  # eating ~ meal, not the fox
    buf = io.StringIO()
    with redirect_stdout(buf):
        assert main(["embed", "--vectors", "--model", str(need_minilm()), "Hello"]) == 0
    assert '"embedding": [' in buf.getvalue()


def test_hub_name_goes_through_snapshot_download(monkeypatch):
    """A name that is not a local path is fetched with huggingface_hub (faked here: tests stay offline)."""
    huggingface_hub = pytest.importorskip("huggingface_hub")
    from attentive import from_pretrained

    asked = {}

    def fake_download(repo_id, revision=None, allow_patterns=None, **_):
        asked.update(repo_id=repo_id, patterns=allow_patterns)
        return str(need_minilm())

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_download)
    loaded = from_pretrained("sentence-transformers/all-MiniLM-L6-v2")
    assert loaded.kind == "encoder" and asked["repo_id"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert "*.safetensors" in asked["patterns"] and not any("bin" in p for p in asked["patterns"])
