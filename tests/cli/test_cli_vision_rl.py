"""`attentive classify`, `rl-data` and `rl-eval`: output on good input, one-line errors on bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

import attentive
from attentive.cli.main import main
from attentive.data.rl import generate_dataset, load_dataset
from attentive.models.decision import DecisionTransformer, DecisionTransformerConfig
from attentive.models.vit import VisionTransformer, ViTConfig
from attentive.tasks.offline_rl import RLArtifacts

pytest.importorskip("gymnasium")


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, err: str, *words: str) -> None:
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    for word in words:
        assert word in lines[0], lines[0]


@pytest.fixture(scope="module")
def vit_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("vit")
    torch.manual_seed(0)
    model = VisionTransformer(ViTConfig(patch_size=7, num_layers=2, d_model=32, num_heads=2, d_ff=64, max_len=17))
    attentive.save(model, path)
    return path


@pytest.fixture(scope="module")
def digit_files(tmp_path_factory):
    """A dark '1' on white paper as a large RGB PNG, and a small grey JPEG of a ring."""
    folder = tmp_path_factory.mktemp("digits")
    img = Image.new("RGB", (120, 90), "white")
    ImageDraw.Draw(img).line([(60, 10), (60, 80)], fill="black", width=9)
    img.save(folder / "one.png")
    ring = Image.new("L", (40, 40), 0)
    ImageDraw.Draw(ring).ellipse([8, 6, 32, 34], outline=255, width=4)
    ring.save(folder / "zero.jpg", quality=90)
    return [folder / "one.png", folder / "zero.jpg"]


def test_classify_prints_digit_and_probabilities_and_draws_attention(capsys, vit_dir, digit_files, tmp_path):
    code, out, _ = run_cli(
        capsys,
        "classify",
        "--checkpoint",
        str(vit_dir),
        *map(str, digit_files),
        "--attention",
        str(tmp_path / "maps"),
        "--device",
        "cpu",
    )
    assert code == 0
    lines = [line for line in out.splitlines() if not line.startswith("attention")]
    assert len(lines) == 2
    for line, path in zip(lines, digit_files):
        head, table = line.split("  ", 1)
        assert head.startswith(f"{path}: ")
        probs = [float(item.split(":")[1]) for item in table.split()]
        assert len(probs) == 10 and sum(probs) == pytest.approx(1.0, abs=0.01)
        assert int(head.split(": ")[1].split()[0]) == int(np.argmax(probs))
    for path in digit_files:
        png = tmp_path / "maps" / f"{path.stem}-attention.png"
        assert png.read_bytes()[:4] == b"\x89PNG"


def test_classify_one_image_attention_goes_to_the_named_file(capsys, vit_dir, digit_files, tmp_path):
    code, out, _ = run_cli(
        capsys,
        "classify",
        "--checkpoint",
        str(vit_dir),
        str(digit_files[0]),
        "--attention",
        str(tmp_path / "a.png"),
        "--method",
        "last",
        "--device",
        "cpu",
    )
    assert code == 0 and (tmp_path / "a.png").is_file() and "attention (last)" in out


def test_classify_bad_input_is_one_line(capsys, vit_dir, tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("this is not an image")
    assert_one_line_error(*run_cli(capsys, "classify", "--checkpoint", str(vit_dir), str(text))[::2], "not an image")
    assert_one_line_error(*run_cli(capsys, "classify", "--checkpoint", str(vit_dir))[::2], "at least one image")
    missing = tmp_path / "missing.png"
    assert_one_line_error(*run_cli(capsys, "classify", "--checkpoint", str(vit_dir), str(missing))[::2], "no such file")
    assert_one_line_error(
        *run_cli(capsys, "classify", "--checkpoint", str(tmp_path / "nothing"), str(text))[::2], "does not exist"
    )


@pytest.fixture(scope="module")
def dt_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("dt")
    dataset = generate_dataset("CartPole-v1", episodes_per_policy=3, seed=0)
    torch.manual_seed(0)
    config = DecisionTransformerConfig(context_len=4, max_len=12, num_layers=1, d_model=16, num_heads=2, d_ff=32)
    attentive.save(DecisionTransformer(config), path)
    RLArtifacts.from_dataset(dataset, rtg_scale=500.0, targets=[100.0, 500.0]).save(path)
    return path


def test_rl_data_writes_a_dataset(capsys, tmp_path):
    out_file = tmp_path / "cartpole.npz"
    code, out, _ = run_cli(
        capsys, "rl-data", "--env", "CartPole-v1", "--out", str(out_file), "--episodes-per-policy", "2"
    )
    assert code == 0 and "heuristic-param-noise" in out and "saved 12 episodes" in out
    assert load_dataset(out_file).num_episodes == 12
    code, out, _ = run_cli(
        capsys, "rl-data", "--env", "CartPole-v1", "--out", str(out_file), "--stock", "--episodes-per-policy", "2"
    )
    assert code == 0 and "param-noise" not in out and load_dataset(out_file).num_episodes == 10


def test_rl_eval_prints_mean_and_std_and_plots(capsys, dt_dir, tmp_path):
    code, out, _ = run_cli(
        capsys, "rl-eval", "--checkpoint", str(dt_dir), "--target-return", "500", "--episodes", "2", "--device", "cpu"
    )
    assert code == 0
    assert "CartPole-v1 target 500: mean return" in out and "+/-" in out and "over 2 episodes" in out
    assert "best behaviour policy in the data: heuristic" in out
    png = tmp_path / "sweep.png"
    code, out, _ = run_cli(
        capsys,
        "rl-eval",
        "--checkpoint",
        str(dt_dir),
        "--targets",
        "100",
        "250",
        "500",
        "--episodes",
        "2",
        "--png",
        str(png),
        "--device",
        "cpu",
    )
    assert code == 0 and out.count(": mean return") == 3 and png.read_bytes()[:4] == b"\x89PNG"


def test_rl_bad_input_is_one_line(capsys, dt_dir, tmp_path):
    assert_one_line_error(
        *run_cli(capsys, "rl-eval", "--checkpoint", str(dt_dir), "--target-return", "lots")[::2],
        "--target-return",
        "'lots' is not a number",
    )
    assert_one_line_error(
        *run_cli(capsys, "rl-eval", "--checkpoint", str(dt_dir), "--targets", "1", "inf")[::2], "not a finite number"
    )
    assert_one_line_error(
        *run_cli(capsys, "rl-data", "--env", "MoonLander-v9", "--out", str(tmp_path / "x.npz"))[::2],
        "unknown environment 'MoonLander-v9'",
    )
    assert_one_line_error(
        *run_cli(capsys, "rl-eval", "--checkpoint", str(tmp_path), "--target-return", "1")[::2], "no rl.json"
    )
