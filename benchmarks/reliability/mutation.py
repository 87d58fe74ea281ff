"""Mutation testing with mutmut 3: do the tests fail when the code is wrong?

For each package (``nn``, ``decode``, the readers of ``interop``, the server's protocol code),
mutmut mutates only that package's files and runs only that package's own fast test files (no
slow tests), in a work folder of its own (``build/mutation/<package>/``: a copy of src/ and
tests/ with a pyproject.toml that adds the ``[tool.mutmut]`` section), so the repository is
never touched and mutmut's ``mutants/`` copy never lands in the source tree.

All mutants are generated; a fixed random sample of them is run (``--sample N`` per package,
seed ``--seed``), and each package's score is killed / run (sampled n of N). Results, with every
survivor (and timeouts, "no tests" and "suspicious" ones) and its diff, go to
``benchmarks/reliability/mutation.json``.

    .venv/bin/python benchmarks/reliability/mutation.py --sample 40            # every package
    .venv/bin/python benchmarks/reliability/mutation.py --packages decode --sample 0   # all of decode

Needs ``pip install -e '.[mutation]'`` (mutmut). mutmut switches mutants inside the test process,
so only in-process tests can kill them: the server tests that start ``attentive serve`` as a
subprocess run unmutated code, and serve's selection keeps to its in-process tests (its score
is a lower bound for the whole suite). Message-text mutants (a string upper-cased) count like
any other.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

import context_common  # noqa: E402

OUT = Path(__file__).with_name("mutation.json")
WORK = ROOT / "build" / "mutation"
MUTMUT = [sys.executable, "-m", "mutmut"]

# package -> files mutated, test files run (each package's own fast tests, default suite only)
PACKAGES: dict[str, dict[str, list[str]]] = {
    "nn": {
        "mutate": [
            "src/attentive/nn/attention.py",
            "src/attentive/nn/cache.py",
            "src/attentive/nn/masks.py",
            "src/attentive/nn/norm.py",
            "src/attentive/nn/positional.py",
            "src/attentive/nn/rope_scaling.py",
            "src/attentive/nn/feedforward.py",
            "src/attentive/nn/embedding.py",
            "src/attentive/nn/loss.py",
            "src/attentive/nn/quant.py",
        ],
        "tests": [
            "tests/nn/test_attention.py",
            "tests/nn/test_cache.py",
            "tests/nn/test_cache_context.py",
            "tests/nn/test_attention_decode.py",
            "tests/nn/test_masks.py",
            "tests/nn/test_positional.py",
            "tests/nn/test_rope_scaling.py",
            "tests/nn/test_loss.py",
            "tests/nn/test_quant.py",
            "tests/nn/test_layers.py",
            "tests/nn/test_mask_and_bias_edges.py",
        ],
    },
    "decode": {
        "mutate": [
            "src/attentive/decode/processors.py",
            "src/attentive/decode/beams.py",
            "src/attentive/decode/config.py",
        ],
        "tests": [
            "tests/decode/test_sampling_distribution.py",
            "tests/decode/test_config_bounds.py",
            "tests/decode/test_beam_order.py",
            "tests/decode/test_decode_details.py",
            "tests/decode/test_beams.py",
            "tests/decode/test_settings.py",
            "tests/decode/test_generate.py",
        ],
    },
    "interop": {
        "mutate": [
            "src/attentive/interop/gguf.py",
            "src/attentive/interop/ctranslate2.py",
            "src/attentive/interop/loading.py",
        ],
        "tests": [
            "tests/interop/test_gguf_blocks.py",
            "tests/interop/test_readers.py",
            "tests/interop/test_reader_fields.py",
            "tests/interop/test_pretrained_formats.py",
        ],
    },
    "serve": {
        "mutate": [
            "src/attentive/serve/schemas.py",
            "src/attentive/serve/errors.py",
            "src/attentive/serve/limits.py",
            "src/attentive/serve/generation.py",  # the SSE stream
        ],
        "tests": [
            # in-process tests only: a server started as a subprocess runs the unmutated code
            "tests/serve/test_serve_units.py",
            "tests/serve/test_serve_security.py",
            "tests/serve/test_serve_protocol_units.py",
        ],
    },
}


def _copy(src: Path, dst: Path) -> None:
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__", "*.so", "*.pyc"))


def _toml_list(items: list[str]) -> str:
    return "[" + ", ".join(json.dumps(i) for i in items) + "]"


def prepare(name: str, spec: dict[str, list[str]]) -> Path:
    """The package's work folder: src/ and tests/ copied, pyproject.toml + [tool.mutmut]."""
    work = WORK / name
    if (work / "mutants").exists():
        shutil.rmtree(work / "mutants")
    work.mkdir(parents=True, exist_ok=True)
    _copy(ROOT / "src", work / "src")
    _copy(ROOT / "tests", work / "tests")
    pyproject = (ROOT / "pyproject.toml").read_text()
    pyproject += (
        "\n[tool.mutmut]\n"
        'source_paths = ["src"]\n'
        f"only_mutate = {_toml_list(spec['mutate'])}\n"
        f"pytest_add_cli_args_test_selection = {_toml_list(spec['tests'])}\n"
        'pytest_add_cli_args = ["-p", "no:cacheprovider", "-x", "-q"]\n'
        "use_git_change_detection = false\n"
        # a mutant counts as a timeout only well past its tests' clean time: the machine is shared
        "timeout_multiplier = 10.0\ntimeout_constant = 60.0\n"
    )
    (work / "pyproject.toml").write_text(pyproject)
    return work


def mutmut(work: Path, *args: str, timeout: float | None = None) -> str:
    done = subprocess.run(
        [*MUTMUT, *args], cwd=work, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"mutmut {' '.join(args[:1])} failed in {work}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        )
    return done.stdout


GENERATE = """
import os, mutmut.__main__ as m
m.set_mutant_under_test("mutant_generation")
os.makedirs("mutants", exist_ok=True)
m.copy_src_dir(); m.copy_also_copy_files(); m.setup_source_paths(); m.store_lines_covered_by_tests()
m.create_mutants(2)
m.collect_or_load_stats(m.get_mutant_runner(2))
mutants, _ = m.collect_source_file_mutation_data(mutant_names=())
for _, name, _ in mutants:
    print("MUTANT", name)
"""


def all_mutants(work: Path) -> list[str]:
    """Every mutant's name: mutmut generates them (``mutmut run``'s first steps) and runs its stats
    pass (which tests reach which function), from the mutated copy; none is run yet."""
    done = subprocess.run(
        [sys.executable, "-c", GENERATE], cwd=work, capture_output=True, text=True, stdin=subprocess.DEVNULL
    )
    if done.returncode != 0:
        raise RuntimeError(f"mutant generation failed in {work}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return sorted(m.group(1) for m in re.finditer(r"^MUTANT (\S+)$", done.stdout, re.M))


def statuses(work: Path) -> dict[str, str]:
    from mutmut.stats import status_by_exit_code

    result = {}
    for meta in (work / "mutants").rglob("*.meta"):
        data = json.loads(meta.read_text())
        for key, code in data.get("exit_code_by_key", {}).items():
            result[key] = status_by_exit_code[code]
    return result


def diff(work: Path, mutant: str) -> str:
    out = mutmut(work, "show", mutant)
    return "\n".join(
        line for line in out.splitlines() if line.startswith(("-", "+")) and not line.startswith(("---", "+++"))
    )


def run_package(name: str, spec: dict[str, list[str]], sample: int, seed: int, children: int) -> dict:
    work = prepare(name, spec)
    start = time.perf_counter()
    names = all_mutants(work)
    chosen = (
        names if sample <= 0 or sample >= len(names) else sorted(random.Random(f"{seed}:{name}").sample(names, sample))
    )
    if chosen:
        mutmut(work, "run", "--max-children", str(children), *chosen)
    status = statuses(work)
    counts: dict[str, int] = {}
    for m in chosen:
        counts[status.get(m, "not checked")] = counts.get(status.get(m, "not checked"), 0) + 1
    killed = counts.get("killed", 0) + counts.get("caught by type check", 0)
    others = [m for m in chosen if status.get(m) not in ("killed", "caught by type check")]
    return {
        "mutated": spec["mutate"],
        "tests": spec["tests"],
        "mutants_total": len(names),
        "mutants_run": len(chosen),
        "killed": killed,
        "score": round(killed / len(chosen), 3) if chosen else None,
        "counts": counts,
        "not_killed": [{"mutant": m, "status": status.get(m, "not checked"), "diff": diff(work, m)} for m in others],
        "seconds": round(time.perf_counter() - start, 1),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--packages", nargs="*", default=list(PACKAGES), choices=list(PACKAGES))
    parser.add_argument("--sample", type=int, default=40, help="mutants run per package (0: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--children", type=int, default=2, help="mutants run in parallel")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)

    packages: dict[str, dict] = {}
    for name in args.packages:
        print(f"[{name}] mutating {len(PACKAGES[name]['mutate'])} files ...", flush=True)
        packages[name] = run_package(name, PACKAGES[name], args.sample, args.seed, args.children)
        packages[name]["sample_seed"] = args.seed
        packages[name]["command"] = " ".join([Path(sys.executable).name, *sys.argv])
        p = packages[name]
        print(f"[{name}] killed {p['killed']} / {p['mutants_run']} (sampled of {p['mutants_total']})", flush=True)
        write(args.out, packages)


def write(out: Path, ran: dict) -> None:
    """Merge this run's packages into the result file (read now: runs of other packages may have
    written it meanwhile)."""

    packages = json.loads(out.read_text()).get("packages", {}) if out.exists() else {}
    packages.update(ran)
    rows = [
        [n, p["killed"], p["mutants_run"], p["mutants_total"], p["score"], len(p["not_killed"])]
        for n, p in sorted(packages.items())
    ]
    result = {
        **context_common.provenance(),
        "mutmut": _mutmut_version(),
        "figures": {f"{n}_score": p["score"] for n, p in sorted(packages.items())},
        "tables": {
            "mutation_scores": {
                "columns": ["package", "killed", "run", "total", "score", "not_killed"],
                "rows": rows,
            }
        },
        "packages": packages,
    }
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}", flush=True)


def _mutmut_version() -> str:
    from importlib.metadata import version

    return version("mutmut")


if __name__ == "__main__":
    main()
