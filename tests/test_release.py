"""The package as a user installs it: build the sdist and the wheel, install the wheel into a fresh
virtual environment, and run commands that need the files the wheel must carry (the bundled
corpora, the explorer's page, the CPU kernels' sources, the recipes' result files)."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import tarfile
import tomllib
import zipfile
from pathlib import Path

import pytest

import attentive

ROOT = Path(__file__).resolve().parents[1]


def test_version_and_licence_agree_with_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert attentive.__version__ == project["version"]
    assert project["license"] == "MIT" and (ROOT / "LICENSE").read_text().startswith("MIT License")
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert f"## [{project['version']}]" in changelog, "CHANGELOG.md has no entry for this version"


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    build = subprocess.run(
        [sys.executable, "-m", "build", "--sdist", "--wheel", "--outdir", str(out), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    assert "License classifiers are deprecated" not in build.stderr + build.stdout
    assert "`project.license` as a TOML table is deprecated" not in build.stderr + build.stdout
    return out


@pytest.mark.timeout(900)
def test_wheel_installs_and_runs_from_a_fresh_venv(dist, tmp_path):
    (wheel,) = dist.glob("attentive-*.whl")
    (sdist,) = dist.glob("attentive-*.tar.gz")
    names = zipfile.ZipFile(wheel).namelist()
    for needed in (
        "attentive/data/bundled/tinyshakespeare/input.txt.gz",
        "attentive/explore/static/index.html",
        "attentive/nn/csrc/panel_linear.cpp",
        "attentive/recipes/results/multi30k-de-en.json",
    ):
        assert needed in names, f"the wheel lacks {needed}"
    assert any(n.endswith("licenses/LICENSE") for n in names), "the wheel carries no LICENSE"
    with tarfile.open(sdist) as tar:
        assert any(n.endswith("/LICENSE") for n in tar.getnames())

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    bin_dir = venv / "bin"
    fresh_site = Path(
        subprocess.check_output(
            [bin_dir / "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True
        ).strip()
    )
    # The wheel goes into the fresh venv; its dependencies (torch and the rest, GBs) are found in
    # the test environment's site-packages through a .pth line. A plain path line does not run that
    # folder's own .pth files, so the editable install of this checkout stays out of sight.
    (fresh_site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(bin_dir / "python"),
            "install",
            "--no-deps",
            "--no-index",
            str(wheel),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    env.pop("PYTHONPATH", None)

    def run(*args: str, timeout: int = 300) -> str:
        done = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout)
        assert done.returncode == 0, f"{args}: {done.stdout[-2000:]}{done.stderr[-2000:]}"
        return done.stdout

    where = run(str(bin_dir / "python"), "-c", "import attentive; print(attentive.__file__, attentive.__version__)")
    assert where.startswith(str(fresh_site)), f"imported {where.strip()}, not the installed wheel"
    assert attentive.__version__ in where
    assert "measured:" in run(str(bin_dir / "attentive"), "recipes")  # the recipes' result files
    # The bundled Tiny Shakespeare corpus, trained on for two steps.
    run(str(bin_dir / "attentive"), "train", "--recipe", "shakespeare-char", "--max-steps", "2", "--out", "run")
    assert (tmp_path / "run" / "config.json").is_file() or any((tmp_path / "run").rglob("*.safetensors"))
    # The explorer's page, exported with a tiny model of the run just trained.
    run(str(bin_dir / "attentive"), "explore", "--model", "run", "--export", "page.html", "To be or not")
    assert "EXPLORER_STATIC" in (tmp_path / "page.html").read_text()
    # The CPU kernels' sources, as the installed package finds them.
    status = run(
        str(bin_dir / "python"),
        "-c",
        "from attentive.nn import kernels; print(kernels.CSRC); print(kernels.kernel_status())",
    )
    assert str(fresh_site) in status.splitlines()[0]
