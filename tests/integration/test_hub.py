"""The OptunaHub package folder: front matter, the names it exposes, its example."""

from __future__ import annotations

import importlib.util
import inspect
import os
import re
import runpy
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import optuna
import pytest

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


def test_the_example_script_loads_this_folder_without_the_network(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    calls = []

    def load_local_module(package: str, *, registry_root: str = os.sep) -> ModuleType:
        calls.append((package, registry_root))
        return _load(Path(registry_root) / package / "__init__.py", "optuna_fmd_hub_local")

    def load_module(package: str, **kwargs: object) -> ModuleType:
        raise OSError("fatal: unable to access the registry: Could not resolve host: github.com")

    fake = ModuleType("optunahub")
    fake.load_local_module = load_local_module  # type: ignore[attr-defined]
    fake.load_module = load_module  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "optunahub", fake)
    monkeypatch.setattr(sys, "argv", ["example.py", "--trials", "2", "--steps", "10"])
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    runpy.run_path(str(HUB / "example.py"), run_name="__main__")
    assert calls == [("samplers/fmd", str(HUB.parents[1]))]
    assert "best: trials [0, 1], mean validation loss" in capsys.readouterr().out


def test_the_readme_and_the_example_load_offline_with_optunahub_itself(tmp_path: Path) -> None:
    optunahub = pytest.importorskip("optunahub")
    import optuna_fmd

    # the README's call, with the checkout's hub/ as its registry_root
    readme = (HUB / "README.md").read_text()
    call = re.search(r"optunahub\.load_local_module\(\s*package=\"samplers/fmd\", (\w+)=", readme)
    assert call and call.group(1) in inspect.signature(optunahub.load_local_module).parameters
    fmd = optunahub.load_local_module(package="samplers/fmd", registry_root=str(HUB.parents[1]))
    assert fmd.FMDSampler is optuna_fmd.FMDSampler
    # the script as a person runs it, every web request failing (a dead proxy)
    dead = "http://127.0.0.1:9"
    env = {**os.environ, **{k: dead for k in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY")}}
    proc = subprocess.run(
        [sys.executable, str(HUB / "example.py"), "--trials", "2", "--steps", "10"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "best: trials [0, 1]" in proc.stdout
