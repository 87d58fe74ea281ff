"""Tokenizers: special ids, BPE round trip on Multi30k, save/load, char errors."""

import json

import pytest

from attentive.data import load_multi30k
from attentive.text import (
    BOS_ID,
    EOS_ID,
    PAD_ID,
    SPECIAL_TOKENS,
    UNK_ID,
    BPETokenizer,
    CharTokenizer,
    load_tokenizer,
)


@pytest.fixture(scope="module")
def sample_pairs():
    return load_multi30k("train")[:2000]


@pytest.fixture(scope="module")
def bpe(sample_pairs):
    texts = [s for pair in sample_pairs for s in pair]  # joint de+en vocabulary
    return BPETokenizer.train(texts, vocab_size=1000, min_frequency=2)


def test_special_ids_fixed():
    assert (PAD_ID, BOS_ID, EOS_ID, UNK_ID) == (0, 1, 2, 3)
    assert SPECIAL_TOKENS == ("<pad>", "<s>", "</s>", "<unk>")


@pytest.mark.parametrize("kind", ["bpe", "char"])
def test_special_ids_in_trained_vocab(kind, bpe):
    tok = bpe if kind == "bpe" else CharTokenizer.train("hello world")
    assert [tok.id_to_token(i) for i in range(4)] == list(SPECIAL_TOKENS)
    assert (tok.pad_id, tok.bos_id, tok.eos_id, tok.unk_id) == (0, 1, 2, 3)


def test_bpe_round_trip_multi30k(bpe, sample_pairs):
    val = load_multi30k("val")[:300]
    for src, tgt in sample_pairs[:300] + val:
        for text in (src, tgt):
            assert bpe.decode(bpe.encode(text)) == text


def test_bpe_round_trip_odd_text(bpe):
    text = "  Zwei  MÄNNER!\tnew\nline  €, é, 日本 <s> </s> <pad>"
    ids = bpe.encode(text)
    assert UNK_ID not in ids and BOS_ID not in ids  # byte-level: nothing unknown; "<s>" is text
    assert bpe.decode(ids) == text


def test_bpe_no_bos_eos_added_and_skip_special(bpe):
    ids = bpe.encode("A dog runs.")
    assert ids and ids[0] != BOS_ID and ids[-1] != EOS_ID
    assert bpe.decode([BOS_ID, *ids, EOS_ID, PAD_ID]) == "A dog runs."
    assert bpe.decode([BOS_ID, *ids], skip_special=False).startswith("<s>")


def test_bpe_vocab_and_batch(bpe):
    assert bpe.vocab_size == 1000
    texts = ["Ein Hund.", "A dog."]
    assert bpe.encode_batch(texts) == [bpe.encode(t) for t in texts]
    assert bpe.decode_batch(bpe.encode_batch(texts)) == texts


def test_bpe_training_deterministic(sample_pairs, bpe):
    texts = [s for pair in sample_pairs for s in pair]
    again = BPETokenizer.train(texts, vocab_size=1000, min_frequency=2)
    assert again.to_json() == bpe.to_json()


def test_bpe_save_load(bpe, tmp_path):
    path = bpe.save(tmp_path / "tok")
    assert path.name == "tokenizer.json"
    assert json.loads(path.read_text())["model"]["type"] == "BPE"  # HF's own format
    for where in (tmp_path / "tok", path):
        loaded = load_tokenizer(where)
        assert isinstance(loaded, BPETokenizer)
        assert loaded.encode("Zwei Hunde <s> spielen.") == bpe.encode("Zwei Hunde <s> spielen.")
        assert loaded.vocab_size == bpe.vocab_size


def test_bpe_file_readable_by_hf_tokenizers(bpe, tmp_path):
    from tokenizers import Tokenizer

    hf = Tokenizer.from_file(str(bpe.save(tmp_path)))
    assert hf.encode("Ein Hund.", add_special_tokens=False).ids == bpe.encode("Ein Hund.")


def test_bpe_rejects_wrong_special_order(tmp_path):
    from tokenizers import Tokenizer, models, trainers

    hf = Tokenizer(models.BPE(unk_token="<unk>"))
    hf.train_from_iterator(["a b c"], trainer=trainers.BpeTrainer(special_tokens=["<unk>", "<pad>"]))
    hf.save(str(tmp_path / "tokenizer.json"))
    with pytest.raises(ValueError, match="special tokens"):
        load_tokenizer(tmp_path)


def test_char_tokenizer_round_trip_and_save(tmp_path):
    tok = CharTokenizer.train("First Citizen:\nBefore we proceed")
    assert tok.vocab_size == 4 + len(set("First Citizen:\nBefore we proceed"))
    text = "Before\nFirst"
    assert tok.decode(tok.encode(text)) == text
    assert min(tok.encode(text)) >= 4
    path = tok.save(tmp_path)
    assert json.loads(path.read_text(encoding="utf-8"))["type"] == "char"
    loaded = load_tokenizer(tmp_path)
    assert isinstance(loaded, CharTokenizer)
    assert loaded.encode(text) == tok.encode(text)


def test_char_unknown_characters_named():
    tok = CharTokenizer.train("abc")
    with pytest.raises(ValueError, match=r"characters not in the vocabulary: 'é', '€'$"):
        tok.encode("abé€aé")


def test_char_decode_out_of_range():
    tok = CharTokenizer.train("abc")
    with pytest.raises(ValueError, match="token id 99"):
        tok.decode([99])


def test_load_tokenizer_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no tokenizer file"):
        load_tokenizer(tmp_path)
    (tmp_path / "tokenizer.json").write_text('{"type": "wordpiece-ish"}')
    with pytest.raises(ValueError, match="unknown tokenizer kind"):
        load_tokenizer(tmp_path)
    (tmp_path / "tokenizer.json").write_text("{oops")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_tokenizer(tmp_path)


def test_every_tokenizer_kind_resolves_to_the_class_that_reads_it():
    """TOKENIZERS is read without importing the classes (they import its module): each line must
    name a Tokenizer that reads its own files back with ``from_json``."""
    import importlib

    from attentive.text import Tokenizer
    from attentive.text.tokenizer import TOKENIZERS

    classes = {}
    for kind, where in TOKENIZERS.items():
        module, _, name = where.partition(":")
        classes[kind] = getattr(importlib.import_module(module), name)
        assert issubclass(classes[kind], Tokenizer) and callable(classes[kind].from_json), kind
    assert classes["char"] is CharTokenizer and classes["BPE"] is BPETokenizer


def test_char_from_json_errors():
    tok = CharTokenizer.train("abc")
    assert CharTokenizer.from_json(tok.to_json()).encode("cab") == tok.encode("cab")
    with pytest.raises(ValueError, match="where.json: not valid JSON"):
        CharTokenizer.from_json("{oops", source="where.json")
    with pytest.raises(ValueError, match="where.json: expected a JSON object, found list"):
        CharTokenizer.from_json("[]", source="where.json")
    with pytest.raises(ValueError, match="where.json: char tokenizer needs a 'vocab' list"):
        CharTokenizer.from_json('{"type": "char"}', source="where.json")
