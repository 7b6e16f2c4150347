"""The repository stands alone: every relative link of the README and docs/ resolves (to a file, and to a heading
where it names one), every docs/ page the code points at exists, and `--help` and docs/options.md list the same
keys: every top-level key of the config schema."""
import dataclasses
import re
from pathlib import Path

import pytest

import run_benchmark
from unlearnbench.config import ExperimentConfig

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", ROOT / "methods" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
KEY = re.compile(r"(?<![\w.$-])([a-z_][a-z0-9_]*)(?:\.[\w<>.]+)?=")
FLAG = re.compile(r"(?<![\w-])--[a-z]+")


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    return {slug(m[1]) for m in re.finditer(r"^#+ (.+)$", text, re.M)}


def test_every_relative_link_resolves():
    broken = []
    for page in PAGES:
        text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
        for target in LINK.findall(text):
            if re.match(r"[a-z]+:", target):       # http(s), mailto: not this test's business
                continue
            path, _, anchor = target.partition("#")
            file = (page.parent / path).resolve() if path else page
            if not file.exists():
                broken.append(f"{page.relative_to(ROOT)}: {target} (no such file)")
            elif anchor and file.suffix == ".md" and anchor not in anchors(file):
                broken.append(f"{page.relative_to(ROOT)}: {target} (no such heading)")
    assert not broken, "\n".join(broken)
    assert len(PAGES) > 15           # the docs pages were found at all


def test_every_docs_path_the_code_names_exists():
    named, missing = 0, []
    for path in ROOT.rglob("*"):
        if path.suffix not in (".py", ".yaml", ".sh") or {".venv", ".git", "build"} & set(path.parts):
            continue
        for ref in re.findall(r"(?<![\w/])docs/[\w./-]*\w", path.read_text(encoding="utf-8", errors="replace")):
            named += 1
            if not (ROOT / ref).exists():
                missing.append(f"{path.relative_to(ROOT)}: {ref}")
    assert not missing, "\n".join(missing)
    assert named > 20


def test_nothing_points_outside_the_repository():
    outside = re.compile("|".join(["SPEC" + " section", "shared" + "/", "MEASUREMENTS" + r"\.md"]))  # not literal: a
    # check of the repository for these strings would find this test
    hits = [f"{p.relative_to(ROOT)}" for p in ROOT.rglob("*") if p.suffix in (".py", ".md", ".yaml", ".sh")
            and not {".venv", ".git", "build"} & set(p.parts) and p != Path(__file__).resolve()
            and outside.search(p.read_text(encoding="utf-8", errors="replace"))]
    assert not hits


def help_keys(capsys) -> tuple[set, set]:
    """The keys and flags of --help's left column (the option, before its description)."""
    run_benchmark.main(["--help"])
    keys, flags = set(), set()
    for line in capsys.readouterr().out.splitlines():
        if re.match(r"  \S", line):
            left = re.split(r"\s{2,}", line.strip())[0]
            keys |= set(KEY.findall(left)) - {"a"}      # a.b.c=<value>: "any other key"
            flags |= set(FLAG.findall(left))
    return keys, flags


def options_keys() -> tuple[set, set]:
    """The keys and flags of docs/options.md's table (its first column)."""
    keys, flags = set(), set()
    for line in (ROOT / "docs" / "options.md").read_text(encoding="utf-8").splitlines():
        if line.startswith("| `"):
            first = line.split(" | ")[0]
            keys |= set(KEY.findall(first))
            flags |= set(FLAG.findall(first))
    return keys, flags


def test_help_and_the_options_page_list_the_same_keys(capsys):
    schema = {f.name for f in dataclasses.fields(ExperimentConfig)} - {"name"} | {"experiment", "task"}
    keys, flags = help_keys(capsys)
    documented, documented_flags = options_keys()
    assert keys == documented, (f"only in --help: {sorted(keys - documented)}; only in docs/options.md: "
                                f"{sorted(documented - keys)}")
    assert keys == schema, f"not listed: {sorted(schema - keys)}; not in the schema: {sorted(keys - schema)}"
    assert flags == documented_flags == {"--fresh", "--debug", "--help"}


@pytest.mark.parametrize("page", ["protocol.md", "metrics.md", "options.md", "extending.md", "layout.md"])
def test_reference_pages_exist_and_are_linked_from_the_readme(page):
    assert (ROOT / "docs" / page).is_file()
    assert f"(docs/{page})" in (ROOT / "README.md").read_text(encoding="utf-8")


def test_the_docs_index_lists_every_page_once():
    """docs/README.md is the one index of the pages: each page of docs/ is linked from it exactly once."""
    index = (ROOT / "docs" / "README.md").read_text(encoding="utf-8")
    linked = re.findall(r"\]\(([\w-]+\.md)\)", index)
    pages = sorted(p.name for p in (ROOT / "docs").glob("*.md") if p.name != "README.md")
    extra = {p for p in linked if linked.count(p) > 1} | (set(linked) - set(pages))
    assert sorted(linked) == pages, f"not in the index: {sorted(set(pages) - set(linked))}; twice or no page: {extra}"
