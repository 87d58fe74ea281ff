"""Instruction data files: every bad line stops reading with the file and line named."""

from __future__ import annotations

import json

import pytest

from attentive.data.instruction import Example, pack, read_examples


def _write(tmp_path, *lines: str):
    path = tmp_path / "data.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_reads_both_forms_and_skips_blank_lines(tmp_path):
    chat = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}
    path = _write(tmp_path, json.dumps(chat), "", json.dumps({"prompt": "2+2=", "completion": "4"}))
    first, second = read_examples(path)
    assert first.as_messages() == chat["messages"] and first.origin == f"{path}:1"
    assert second.as_messages() == [{"role": "user", "content": "2+2="}, {"role": "assistant", "content": "4"}]
    assert second.origin == f"{path}:3"


@pytest.mark.parametrize(
    "line, message",
    [
        ('{"prompt": "a", "completion": "b"', "not valid JSON"),
        ('["a list"]', "expected a JSON object"),
        (
            '{"text": "no fields"}',
            r"expected 'messages' \(a conversation\) or 'prompt' and 'completion'; the object has \['text'\]",
        ),
        ('{"messages": [{"role": "user", "content": "Hi"}]}', "no assistant turn"),
        ('{"messages": [{"role": "robot", "content": "Hi"}]}', "message 0 must be an object with a role"),
        ('{"messages": []}', "non-empty list"),
        ('{"prompt": "a", "completion": ""}', "completion is empty"),
    ],
)
def test_a_bad_line_is_an_error_naming_file_and_line(tmp_path, line, message):
    good = json.dumps({"prompt": "a", "completion": "b"})
    path = _write(tmp_path, good, line)
    with pytest.raises(ValueError, match=message) as err:
        read_examples(path)
    assert str(err.value).startswith(f"{path}:2: ") and "\n" not in str(err.value)


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        read_examples(tmp_path / "nope.jsonl")
    with pytest.raises(ValueError, match="no examples"):
        read_examples(_write(tmp_path, ""))


def test_pack_fills_rows_in_order_without_exceeding_them():
    lengths = [5, 4, 3, 6, 2]
    rows = pack(lengths, [0, 1, 2, 3, 4], max_len=9)
    assert rows == [[0, 1], [2, 3], [4]]
    assert all(sum(lengths[i] for i in row) <= 9 for row in rows)
    with pytest.raises(ValueError, match="more than a row"):
        pack([10], [0], max_len=9)


def test_chat_example_helper():
    example = Example.chat(("user", "a"), ("assistant", "b"))
    assert example.as_messages() == [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]
