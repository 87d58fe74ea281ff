"""The documentation site builds with ``mkdocs build --strict`` (every link, anchor and
mkdocstrings reference resolves), and its generated reference covers what the code has: every
command and option, preset, recipe, bundled model, config key, public Python name, HTTP operation,
environment variable and server metric.

The site is built once for the module (about a minute on 2 cores). ``MKDOCS_CONFIG`` may name
another config file to build instead of ``mkdocs.yml`` (e.g. a copy whose nav leaves out pages
not written yet).
"""

from __future__ import annotations

import dataclasses
import html
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from markdown_blocks import ROOT

import docref  # scripts/, put on the path by markdown_blocks

pytestmark = pytest.mark.timeout(900)


@dataclass
class Site:
    root: Path
    returncode: int
    log: str

    def page(self, path: str) -> str:
        """The built HTML of the page at site path ``path`` (``reference/cli.md``)."""
        built = self.root / (path[: -len(".md")] + "/index.html" if path.endswith(".md") else path)
        assert built.is_file(), f"{path} was not built ({built} is missing)"
        return built.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Site:
    out = tmp_path_factory.mktemp("site")
    config = Path(os.environ.get("MKDOCS_CONFIG", ROOT / "mkdocs.yml"))
    mkdocs = ROOT / ".venv" / "bin" / "mkdocs"
    command = [str(mkdocs)] if mkdocs.is_file() else [sys.executable, "-m", "mkdocs"]
    command += ["build", "--strict", "--config-file", str(config), "--site-dir", str(out)]
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    return Site(out, result.returncode, result.stdout + result.stderr)


def code(text: str) -> str:
    """``text`` as the site shows an inline code span."""
    return f"<code>{html.escape(str(text), quote=False)}</code>"


def missing_from(page: str, items) -> list[str]:
    return [str(item) for item in items if code(item) not in page]


def test_site_builds_strict(site):
    assert site.returncode == 0, "mkdocs build --strict failed:\n" + site.log[-6000:]


def test_every_command_and_option_is_in_the_cli_reference(site):
    page = site.page("reference/cli.md")
    missing = []
    for name, parser in docref.commands().items():
        if f'id="{docref.anchor("attentive " + name)}"' not in page:
            missing.append(f"attentive {name}: no section")
        missing += [f"attentive {name} {option}" for option in missing_from(page, docref.option_strings(parser))]
    assert not missing, "not in reference/cli.md:\n" + "\n".join(missing)


def test_every_bench_name_is_in_the_cli_reference(site):
    from attentive.cli.bench import BENCHMARKS

    assert not missing_from(site.page("reference/cli.md"), BENCHMARKS)


def test_every_preset_recipe_and_bundled_model_is_in_the_registries(site):
    from attentive.config import presets
    from attentive.interop.bundled import BUNDLED
    from attentive.recipes import recipes

    page = site.page("reference/registries.md")
    names = [*presets(), *recipes(), *(name for model in BUNDLED for name in model.names)]
    assert not missing_from(page, names)


def test_every_config_key_is_in_the_registries(site):
    from attentive.config import FAMILIES, TransformerConfig
    from attentive.decode.config import EngineConfig, GenerationConfig
    from attentive.lazy import entry
    from attentive.lora import LoRAConfig
    from attentive.recipes import recipes
    from attentive.recipes.pretrained import FinetuneConfig
    from attentive.serve.settings import ServeSettings
    from attentive.train.optim import OptimConfig
    from attentive.train.trainer import TrainConfig

    classes = [TransformerConfig, *(entry(where).config_class for where in FAMILIES.values())]
    classes += list(dict.fromkeys(type(spec.data) for spec in recipes().values()))
    classes += [OptimConfig, TrainConfig, FinetuneConfig, LoRAConfig, GenerationConfig, EngineConfig, ServeSettings]
    page = site.page("reference/registries.md")
    missing = [cls.__name__ for cls in classes if f'id="{docref.anchor(cls.__name__)}"' not in page]
    for cls in classes:
        missing += [f"{cls.__name__}.{f.name}" for f in dataclasses.fields(cls) if code(f.name) not in page]
    assert not missing, "not in reference/registries.md:\n" + "\n".join(missing)


@pytest.mark.parametrize("package", docref.PACKAGES)
def test_every_public_name_is_in_the_python_reference(site, package):
    page = site.page(f"reference/python/{package}.md")
    entries = docref.api_entries(package)
    assert entries, f"{package}: no public names found"
    missing = [e.name for e in entries if code(e.name) not in page]
    # each one documented below the table: mkdocstrings' heading (or the minimal one) by its id
    missing += [f"{e.name} (no section)" for e in entries if f'id="{e.path or e.package + "." + e.name}"' not in page]
    assert not missing, f"not in reference/python/{package}.md:\n" + "\n".join(missing)
    assert f'href="{package}/"' in site.page("reference/python.md")


def test_every_operation_is_in_the_http_reference(site):
    page = site.page("reference/http.md")
    schema = docref.openapi()
    operations = [f"{method.upper()} {path}" for path, methods in schema["paths"].items() for method in methods]
    assert operations
    missing = [op for op in operations if code(op) not in page or f'id="{docref.anchor(op)}"' not in page]
    missing += [
        f"schema {name}"
        for name in schema["components"]["schemas"]
        if f'id="{docref.anchor("schema " + name)}"' not in page
    ]
    assert not missing, "not in reference/http.md:\n" + "\n".join(missing)
    served = json.loads(site.page("reference/openapi.json"))
    assert served["paths"].keys() == schema["paths"].keys()


def test_every_environment_variable_is_in_the_reference(site):
    from attentive.environment import VARIABLES

    page = site.page("reference/environment.md")
    assert not missing_from(page, [v.name for v in VARIABLES] + list(docref.benchmark_variables()))


def test_every_server_metric_is_in_the_reference(site):
    page = site.page("reference/metrics.md")
    assert not missing_from(page, [m["name"] for m in docref.server_metrics()] + docref.train_record_keys())


def test_the_changelog_is_on_the_site(site):
    from attentive import __version__

    assert f"[{__version__}]" in (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    assert __version__ in site.page("changelog.md")
