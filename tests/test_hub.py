"""The OptunaHub package folder: front matter, the names it exposes, its example."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import optuna

HUB = Path(__file__).resolve().parent.parent / "hub" / "samplers" / "fmd"


def _load(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def test_the_readme_has_the_registry_front_matter() -> None:
    text = (HUB / "README.md").read_text()
    m = re.match(r"---\n(.*?)\n---\n", text, re.S)
    assert m, "front matter between --- lines at the top"
    fields = dict(line.split(": ", 1) for line in m.group(1).splitlines())
    assert set(fields) == {"author", "title", "description", "tags", "optuna_versions", "license"}
    assert "sampler" in fields["tags"] and fields["license"] == "MIT License"
    listed = [v.strip() for v in fields["optuna_versions"].strip("[]").split(",")]
    assert all(re.fullmatch(r"\d+\.\d+\.\d+", v) for v in listed), listed
    # the Optuna this suite runs on is of a listed major version (a newer minor release of one
    # must not fail CI; add it to the list once tested)
    majors = {v.split(".")[0] for v in listed}
    assert optuna.__version__.split(".")[0] in majors, (optuna.__version__, listed)
    for section in ("## Abstract", "## Class or Function Names", "## Example"):
        assert section in text
    assert (HUB / "LICENSE").read_text() == (HUB.parent.parent.parent / "LICENSE").read_text()


def test_the_package_exposes_the_sampler_and_its_example_runs() -> None:
    hub = _load(HUB / "__init__.py", "optuna_fmd_hub")
    from optuna_fmd import FMDSampler

    assert hub.FMDSampler is FMDSampler and "FMDSampler" in hub.__all__
    example = _load(HUB / "example.py", "optuna_fmd_hub_example")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    value = example.main(hub, trials=6, steps=20)
    assert 0 < value < 3
