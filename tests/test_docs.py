"""The README and docs/ stay short, linked and true to the code.

Checks: the README's length and first screen, every relative link and #anchor
in README.md and docs/*.md (GitHub's anchor rules), every docs page linked
from the README, every `make <target>` and console script the docs name, and
every config group, option and key docs/config.md names (composed with Hydra).
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [README, *DOCS]
FIRST_SCREEN = 40
MAX_README_LINES = 350

FENCE = re.compile(r"^\s*(```|~~~)")
LINK = re.compile(r"(?<!!)\[(?:[^\[\]]|\[[^\]]*\])*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
INLINE_CODE = re.compile(r"(`+)(.+?)\1")


def split_code(text: str) -> tuple[list[str], list[str]]:
    """(prose lines with inline code blanked, code snippets: fenced lines and inline spans)."""
    prose, code, fenced = [], [], False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        if fenced:
            code.append(line)
            continue
        code += [m.group(2) for m in INLINE_CODE.finditer(line)]
        prose.append(INLINE_CODE.sub(lambda m: " " * len(m.group(0)), line))
    return prose, code


def github_slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading keeps its text
    text = re.sub(r"<[^>]+>", "", text).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every #anchor GitHub gives the headings of a markdown file (repeats get -1, -2, ...)."""
    seen: dict[str, int] = {}
    out = set()
    fenced = False
    for line in path.read_text().splitlines():  # headings come from the raw lines (their inline code counts as text)
        if FENCE.match(line):
            fenced = not fenced
            continue
        m = None if fenced else re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            slug = github_slug(m.group(1))
            n = seen.get(slug, 0)
            out.add(slug if n == 0 else f"{slug}-{n}")
            seen[slug] = n + 1
    return out


def relative_links(path: Path) -> list[str]:
    prose, _ = split_code(path.read_text())
    links = [m.group(1) for line in prose for m in LINK.finditer(line)]
    return [t for t in links if not re.match(r"^[a-z][a-z0-9+.-]*:", t)]  # http:, https:, mailto:


def test_readme_is_short():
    n = len(README.read_text().splitlines())
    print(f"README.md: {n} lines")
    assert n < MAX_README_LINES, f"README.md has {n} lines; move reference material into docs/"


def test_first_screen_holds_the_two_commands():
    head = README.read_text().splitlines()[:FIRST_SCREEN]
    _, code = split_code("\n".join(head))
    for cmd in ("make demo", "make test"):
        assert any(re.match(rf"\s*{cmd}(\s|$)", c) for c in code), (
            f"`{cmd}` is not a command in the README's first {FIRST_SCREEN} lines")


def test_every_docs_page_is_linked_from_the_readme():
    assert DOCS, "docs/ holds no page"
    linked = {(README.parent / t.split("#")[0]).resolve() for t in relative_links(README)}
    missing = [p.name for p in DOCS if p.resolve() not in linked]
    assert not missing, f"README.md does not link docs/{', docs/'.join(missing)}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_and_anchors_resolve(page):
    broken = []
    links = relative_links(page)
    for target in links:
        file_part, _, anchor = target.partition("#")
        dest = (page.parent / file_part).resolve() if file_part else page
        if not dest.exists():
            broken.append(f"{target}: no file {dest.relative_to(ROOT) if dest.is_relative_to(ROOT) else dest}")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: no heading with anchor #{anchor} in {dest.name}")
    assert not broken, f"{page.name}: broken links:\n" + "\n".join(broken)


def test_github_slug_follows_githubs_rules():
    assert github_slug("Weights & Biases") == "weights--biases"
    assert github_slug("Post-hoc analysis of final weights: `bnlab-analyze`") == (
        "post-hoc-analysis-of-final-weights-bnlab-analyze")
    assert github_slug("metrics.jsonl rows") == "metricsjsonl-rows"
    assert github_slug("4. Ioffe & Szegedy 2015, Figure 1") == "4-ioffe--szegedy-2015-figure-1"


def makefile_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text()
    return set(re.findall(r"^([A-Za-z0-9_-]+)\s*:(?!=)", text, flags=re.M))


def test_every_make_target_named_exists():
    targets = makefile_targets()
    assert {"demo", "test"} <= targets
    named = {}
    for page in PAGES:
        _, code = split_code(page.read_text())
        for snippet in code:
            for t in re.findall(r"(?:^|[\s;&|(])make\s+([a-z][\w-]*)", snippet):
                named.setdefault(t, page.name)
    assert named, "the docs name no make target"
    unknown = {t: p for t, p in named.items() if t not in targets}
    assert not unknown, f"make targets named in the docs but not in the Makefile: {unknown}"


def test_every_console_script_named_exists():
    scripts = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"])
    named = {}
    for page in PAGES:
        for s in re.findall(r"(?<![\w/.-])(bnlab-[a-z]+)(?![\w/-])", page.read_text()):
            named.setdefault(s, page.name)
    assert named, "the docs name no console script"
    unknown = {s: p for s, p in named.items() if s not in scripts}
    assert not unknown, f"console scripts named in the docs but not in [project.scripts]: {unknown}"


# ---- docs/config.md against configs/ ------------------------------------------------------

CONFIGS = ROOT / "configs"
KEY = re.compile(r"^[a-z_][a-z0-9_]*(\.[a-z0-9_]+)*(\.\*)?$")


def strip_parens(text: str) -> str:
    """The text without any (...) part, nested or across lines: defaults and remarks, not keys."""
    out, depth = [], 0
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")" and depth:
            depth -= 1
        elif depth == 0:
            out.append(ch)
    return "".join(out)


def flat_keys(node, prefix: str = "") -> set[str]:
    """Every dotted key path of a nested mapping (its inner nodes too)."""
    keys = set()
    if isinstance(node, dict):
        for k, v in node.items():
            path = f"{prefix}{k}"
            keys.add(path)
            keys |= flat_keys(v, path + ".")
    return keys


def group_options(group: str) -> set[str]:
    return {p.stem for p in (CONFIGS / group).glob("*.yaml")}


def group_keys(group: str) -> set[str]:
    """Keys of every option of a group, as they appear under cfg.<group> (package headers honoured)."""
    keys = set()
    for path in (CONFIGS / group).glob("*.yaml"):
        node = OmegaConf.to_container(OmegaConf.load(path), resolve=False) or {}
        if "@package _global_" in path.read_text().split("\n", 1)[0]:
            keys |= flat_keys(node)
        else:
            keys |= flat_keys({group: node})
    return keys


@pytest.fixture(scope="module")
def known_keys() -> set[str]:
    with initialize_config_module("bnlab.configs", version_base="1.3"):
        cfg = compose("config")
    keys = flat_keys(OmegaConf.to_container(cfg, resolve=False))
    for group in (p.name for p in CONFIGS.iterdir() if p.is_dir() and p.name != "hydra"):
        keys |= group_keys(group)
    return keys


def key_exists(key: str, known: set[str]) -> bool:
    if key.endswith(".*"):
        return any(k.startswith(key[:-1]) for k in known)
    return key in known


def resolve_relative(tokens: list[str], base: str) -> list[str]:
    """`.d_max` after `batch_renorm.r_max` is batch_renorm.d_max; bare tokens sit under `base`."""
    out, last = [], ""
    for t in tokens:
        full = (last.rsplit(".", 1)[0] + t) if t.startswith(".") and "." in last else f"{base}{t.lstrip('.')}"
        out.append(full)
        last = full
    return out


def config_doc() -> str:
    return (ROOT / "docs" / "config.md").read_text()


def table_rows(text: str, header_first_cell: str) -> list[list[str]]:
    """The body rows of the markdown table whose header starts with `header_first_cell`."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {header_first_cell} |"))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]])
    return rows


def ticked(cell: str) -> list[str]:
    return [m.group(2) for m in INLINE_CODE.finditer(cell)]


def test_config_groups_and_options_exist(known_keys):
    rows = table_rows(config_doc(), "group")
    assert len(rows) >= 8, "docs/config.md's group table is missing"
    missing = []
    for group_cell, options_cell, keys_cell in rows:
        group = ticked(group_cell)[0]
        if not (CONFIGS / group).is_dir():
            missing.append(f"group {group}: no configs/{group}/")
            continue
        options = [o for o in ticked(strip_parens(options_cell)) if KEY.match(o)]
        missing += [f"{group}={o}: no configs/{group}/{o}.yaml" for o in options if o not in group_options(group)]
        keys = [k for k in ticked(strip_parens(keys_cell)) if KEY.match(k.lstrip("."))]
        missing += [f"{group}: key {k} in no option" for k in resolve_relative(keys, f"{group}.")
                    if not key_exists(k, known_keys)]
    assert not missing, "docs/config.md names what configs/ lacks:\n" + "\n".join(missing)


def test_config_dotted_keys_and_choices_exist(known_keys):
    """Every `group=option` and every dotted `<top-level key>.<...>` outside (...) in docs/config.md."""
    tokens = ticked(strip_parens(config_doc()))
    top = {k.split(".")[0] for k in known_keys}
    missing, checked = [], 0
    for t in tokens:
        if m := re.fullmatch(r"([a-z_]+)=([a-z0-9_]+)", t):
            if (CONFIGS / m.group(1)).is_dir():
                checked += 1
                if m.group(2) not in group_options(m.group(1)):
                    missing.append(f"{t}: no configs/{m.group(1)}/{m.group(2)}.yaml")
        elif KEY.match(t) and "." in t and t.split(".")[0] in top:
            checked += 1
            if not key_exists(t, known_keys):
                missing.append(t)
    assert checked >= 30, f"only {checked} keys checked: has docs/config.md lost its tables?"
    assert not missing, "docs/config.md names keys configs/ lacks:\n" + "\n".join(missing)


def test_config_top_level_keys_exist(known_keys):
    text = config_doc()
    para = text[text.index("Top-level keys:"):]
    para = para[:para.index("\n\n")]
    keys = [k for k in ticked(strip_parens(para)) if KEY.match(k)]
    assert {"arms", "seed", "device"} <= set(keys)
    assert not [k for k in keys if not key_exists(k, known_keys)]
