"""The OptunaHub package folder: front matter, the names it exposes, its example."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import optuna

HUB = Path(__file__).resolve().parents[2] / "hub" / "samplers" / "fmd"


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


def test_the_package_exposes_the_names_of_optuna_fmd_and_its_example_runs() -> None:
    import optuna_fmd

    hub = _load(HUB / "__init__.py", "optuna_fmd_hub")
    # `fmd = optunahub.load_module(...)` is the `fmd` of `import optuna_fmd as fmd`
    assert sorted(hub.__all__) == sorted(optuna_fmd.__all__)
    for name in optuna_fmd.__all__:
        assert getattr(hub, name) is getattr(optuna_fmd, name), name
    text = (HUB / "README.md").read_text() + (HUB / "example.py").read_text()
    used = set(re.findall(r"\bfmd\.(\w+)", text))
    assert used <= set(optuna_fmd.__all__), used - set(optuna_fmd.__all__)
    example = _load(HUB / "example.py", "optuna_fmd_hub_example")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    value = example.main(hub, trials=6, steps=20)
    assert 0 < value < 3


def test_the_requirements_install_from_an_index_and_match_the_package() -> None:
    import tomllib

    lines = (HUB / "requirements.txt").read_text().splitlines()
    reqs = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    pyproject = tomllib.loads((HUB.parent.parent.parent / "pyproject.toml").read_text())
    # optuna-fmd is on no index: the file lists what it needs, the README says how to get it
    assert reqs == pyproject["project"]["dependencies"]
    assert not any(re.match(r"optuna[-_]fmd\b", r) for r in reqs)
    readme = (HUB / "README.md").read_text()
    assert "pip install /path/to/optuna-fmd" in readme and "not on PyPI" in readme
