"""The environment variables attentive reads or sets, in one table.

The documentation's reference page is rendered from ``VARIABLES``; a test holds the table to the
source (every variable the package reads is listed, every listed one is read somewhere).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Variable:
    name: str
    default: str
    effect: str
    where: str  # the module that reads it


VARIABLES = (
    Variable(
        "ATTENTIVE_API_KEY",
        "unset (no key)",
        "`attentive serve`'s API key when `--api-key` is not given: every route but `/health` then "
        "requires `Authorization: Bearer KEY`.",
        "attentive.serve.settings",
    ),
    Variable(
        "ATTENTIVE_KERNELS",
        "1",
        "`0` turns off the C++ CPU kernels (int8 / int4 panels, one-query attention): the plain "
        "PyTorch path runs instead, the reference the kernels are tested against.",
        "attentive.nn.kernels",
    ),
    Variable(
        "ATTENTIVE_ONEDNN",
        "1",
        "`0` makes fp32 panels of many rows use `F.linear` instead of oneDNN's prepacked matmul.",
        "attentive.nn.kernels",
    ),
    Variable(
        "ATTENTIVE_PARALLEL_MIN",
        "4194304 (4M multiply-adds)",
        "The smallest product the C++ kernels split across threads; a smaller one runs on the "
        "caller's thread, since waking a passive thread costs more than it saves.",
        "attentive/nn/csrc/cpu_common.h",
    ),
    Variable(
        "ATTENTIVE_UPDATE_DOCS",
        "unset",
        "`1` makes the explorer's screenshot test (`tests/explore/test_screenshots.py`, slow) write "
        "its pictures into `docs/explore/` instead of comparing with them.",
        "tests/explore/test_screenshots.py",
    ),
    Variable(
        "ATTENTIVE_CHROMIUM",
        "`chromium` on the `PATH`",
        "The browser the explorer's page tests drive through Playwright (tests only).",
        "tests/explore/explore_support.py",
    ),
    Variable(
        "ATTENTIVE_TEST_ARTIFACTS",
        "`test-artifacts/`",
        "Where the explorer's browser tests leave screenshots and page logs (tests only).",
        "tests/explore/explore_support.py",
    ),
    Variable(
        "ATTENTIVE_TRANSLATION_RUN",
        "`runs/multi30k-de-en`",
        "The trained translator the explorer's screenshot test opens (tests only).",
        "tests/explore/test_screenshots.py",
    ),
    Variable(
        "OMP_WAIT_POLICY",
        "`PASSIVE`, set by `import attentive` when unset and torch is not loaded yet",
        "OpenMP's thread wait policy; passive threads keep a shared machine's cores free. A value you set is kept.",
        "attentive._runtime",
    ),
    Variable(
        "ATTENTIVE_SET_OMP_WAIT_POLICY",
        "set to `1` by attentive",
        "Records that attentive (not the user) chose `OMP_WAIT_POLICY`, for the runtime note; not "
        "meant to be set by hand.",
        "attentive._runtime",
    ),
    Variable(
        "TORCHINDUCTOR_CACHE_DIR",
        "`~/.cache/attentive/inductor` (under `XDG_CACHE_HOME` when set)",
        "Where compiled decoding steps are kept, so a second start of a server or `generate --compile` finds them.",
        "attentive._runtime",
    ),
    Variable(
        "XDG_CACHE_HOME",
        "`~/.cache`",
        "The cache folder `TORCHINDUCTOR_CACHE_DIR` defaults under.",
        "attentive._runtime",
    ),
    Variable(
        "RANK, WORLD_SIZE, LOCAL_RANK",
        "set by torchrun",
        "A training run started by `torchrun` reads its place in the group from these.",
        "attentive.train.distributed",
    ),
)


def names() -> set[str]:
    """Every variable name in the table (a row may name several)."""
    return {name.strip() for variable in VARIABLES for name in variable.name.split(",")}
