"""The documentation's links hold: README.md and the pages under docs/ point only at files
(and headings) that exist, and README.md's table of contents reaches every page."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]
#: ``[text](target)`` and ``![alt](target)``, outside code spans and blocks.
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def _prose(text: str) -> str:
    """The text without fenced code blocks and inline code spans."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)
    return re.sub(r"`[^`\n]*`", "", text)


def _anchors(page: Path) -> set[str]:
    """GitHub's anchors of ``page``'s headings."""
    out = set()
    for line in _prose(page.read_text()).splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            out.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return out


def _links(page: Path) -> list[str]:
    return [t for t in LINK.findall(_prose(page.read_text())) if "://" not in t]


def test_the_docs_pages_exist() -> None:
    assert {p.name for p in DOCS.glob("*.md")} >= {"using.md", "sampler.md", "layout.md"}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_and_image_points_at_a_file_or_heading(page: Path) -> None:
    broken = []
    for target in _links(page):
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists() or (file.suffix == ".md" and anchor and anchor not in _anchors(file)):
            broken.append(target)
    assert broken == []


def test_the_readme_links_every_docs_page() -> None:
    linked = {(ROOT / t.partition("#")[0]).resolve() for t in _links(ROOT / "README.md")}
    missing = [p.name for p in DOCS.glob("*.md") if p.resolve() not in linked]
    assert missing == []


def _shell(page: Path) -> str:
    """The commands of ``page``'s ```bash and ```shell blocks."""
    blocks = re.findall(r"^```(?:bash|shell)\n(.*?)^```", page.read_text(), flags=re.M | re.S)
    return "\n".join(blocks)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_the_commands_name_python3_which_every_system_has(page: Path) -> None:
    # many systems have no `python`, only `python3`
    assert re.findall(r"(?:^|[\s;&|(])(python -m \S+)", _shell(page), flags=re.M) == []


def test_the_readme_install_offers_the_cpu_build_of_torch_and_says_what_each_costs() -> None:
    commands = _shell(ROOT / "README.md")
    assert "python3 -m venv .venv" in commands
    assert "pip install torch torchvision --index-url https://download.pytorch.org/whl/cpu" in (
        commands
    )
    prose = " ".join((ROOT / "README.md").read_text().split())
    assert "the CUDA build: a 5.9 GB `.venv`" in prose and "a `.venv` of about 1.5 GB" in prose


def test_the_readme_first_screen_speaks_plainly_and_the_quick_start_is_two_commands() -> None:
    text = (ROOT / "README.md").read_text()
    first, _, rest = text.partition("## Quick start")
    prose = " ".join(first.split())
    # the benchmarks' own words stay in the benchmarks: no budget unit, test or method name there
    jargon = ["PEE", "runs' worth", "ablation", "Holm", "fresh-seed", "fmd-pop2", "protocol v"]
    assert [word for word in jargon if word in prose] == []
    for said in ("**When to use it.**", "**When not.**", "`optuna-fmd report"):
        assert said in prose
    # the honest reading of the current tables, with a link to them
    assert "#what-users-run-instead-protocol-v6s-anchor-table-cpu" in prose
    assert "TPE and CMA-ES" in prose and "hypergradients switched off" in prose
    quick = re.search(r"```bash\n(.*?)```", rest, re.S)
    assert quick and quick.group(1).split("\n")[:-1] == ["make demo", "make test"]
