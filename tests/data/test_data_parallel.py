"""Parallel corpus readers: Multi30k sizes, alignment, and errors that name the file."""

import gzip

import pytest

from attentive.data import MULTI30K_SPLITS, load_multi30k, read_parallel, read_tsv


@pytest.mark.parametrize(
    "split,size",
    [("train", 29000), ("val", 1014), ("test_2016_flickr", 1000), ("test_2017_flickr", 1000)],
)
def test_multi30k_sizes(split, size):
    pairs = load_multi30k(split)
    assert len(pairs) == size
    assert all(s and t for s, t in pairs)


def test_multi30k_direction_and_alignment():
    de_en = load_multi30k("val")
    en_de = load_multi30k("val", src="en", tgt="de")
    assert [(t, s) for s, t in de_en] == en_de
    assert de_en[0] == (
        "Eine Gruppe von Männern lädt Baumwolle auf einen Lastwagen",
        "A group of men are loading cotton onto a truck",
    )
    assert set(MULTI30K_SPLITS) == {"train", "val", "test_2016_flickr", "test_2017_flickr"}


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"split": "dev"}, "unknown Multi30k split"),
        ({"split": "val", "src": "fr"}, "'fr' is not bundled"),
        ({"split": "val", "src": "en"}, "both 'en'"),
    ],
)
def test_multi30k_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        load_multi30k(**kwargs)


def _write(path, text: str | bytes):
    data = text.encode("utf-8") if isinstance(text, str) else text
    if path.name.endswith(".gz"):
        data = gzip.compress(data)
    path.write_bytes(data)
    return path


def test_read_parallel_plain_and_gz(tmp_path):
    src = _write(tmp_path / "a.de", "Hallo Welt\r\nZwei Hunde\n")
    tgt = _write(tmp_path / "a.en.gz", "Hello world\nTwo dogs\n")
    corpus = read_parallel(src, tgt)
    assert corpus.pairs == [("Hallo Welt", "Hello world"), ("Zwei Hunde", "Two dogs")]
    assert corpus.skipped_empty == 0 and len(corpus) == 2


def test_line_count_mismatch_names_both_files(tmp_path):
    src = _write(tmp_path / "x.de", "a\nb\nc\n")
    tgt = _write(tmp_path / "x.en", "a\nb\n")
    with pytest.raises(ValueError, match=r"x\.de has 3 lines.*x\.en has 2"):
        read_parallel(src, tgt)


def test_unicode_line_separator_does_not_misalign(tmp_path):
    src = _write(tmp_path / "u.de", "eins\u2028zwei\ndrei\n")
    tgt = _write(tmp_path / "u.en", "one two\nthree\n")
    assert read_parallel(src, tgt).pairs[1] == ("drei", "three")


def test_empty_file_named(tmp_path):
    src = _write(tmp_path / "full.de", "a\n")
    tgt = _write(tmp_path / "empty.en", "")
    with pytest.raises(ValueError, match=r"empty\.en: file is empty"):
        read_parallel(src, tgt)


def test_bad_bytes_name_file_and_line(tmp_path):
    src = _write(tmp_path / "bad.de", b"gut\nschl\xffecht\n")
    tgt = _write(tmp_path / "ok.en", "good\nbad\n")
    with pytest.raises(ValueError, match=r"bad\.de:2: invalid UTF-8"):
        read_parallel(src, tgt)


def test_not_gzip_named(tmp_path):
    src = tmp_path / "fake.de.gz"
    src.write_bytes(b"plain text\n")
    with pytest.raises(ValueError, match=r"fake\.de\.gz: not a readable gzip"):
        read_parallel(src, src)


def test_empty_lines_skipped_and_counted(tmp_path):
    src = _write(tmp_path / "e.de", "eins\n\ndrei\nvier\n")
    tgt = _write(tmp_path / "e.en", "one\ntwo\n\nfour\n")
    with pytest.warns(UserWarning, match="skipped 2 pair"):
        corpus = read_parallel(src, tgt)
    assert corpus.pairs == [("eins", "one"), ("vier", "four")]
    assert corpus.skipped_empty == 2


def test_read_tsv(tmp_path):
    path = _write(tmp_path / "p.tsv", "Hallo\tHello\n\nZwei\tTwo\nDrei\t\n")
    with pytest.warns(UserWarning, match="skipped 2 pair"):
        corpus = read_tsv(path)
    assert corpus.pairs == [("Hallo", "Hello"), ("Zwei", "Two")]
    assert corpus.skipped_empty == 2


@pytest.mark.parametrize("line,n", [("only one field", 1), ("a\tb\tc", 3)])
def test_read_tsv_bad_field_count(tmp_path, line, n):
    path = _write(tmp_path / "bad.tsv", f"ok\tfine\n{line}\n")
    with pytest.raises(ValueError, match=rf"bad\.tsv:2: expected 2 tab-separated fields .*found {n}"):
        read_tsv(path)
