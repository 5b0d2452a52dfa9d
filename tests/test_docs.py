"""The documentation site (docs/): its pages say only what the code has, and it builds and draws.

Fast checks, on the sources: every `culturesim` command and option a page shows exists in the command
line, every key a TOML snippet sets exists in the study-file schema (a snippet with `[study]` is a whole
study and must validate), and the generated study-file reference lists every key of the schema.

The slow check builds the site once, exactly as `make docs` does (docs/_ext/build_site.py: a toy run of the
quickstart, then a strict Sphinx build whose notebooks execute against it), into a temporary folder, and
opens it in a real headless Chromium (driven over the DevTools protocol on a pipe) served from the
loopback: the pages draw with no console error and no request off the machine, a tutorial's figure is
an image that loaded, and the search page finds the study-file reference by a key's name. Screenshots go
to $CULTURESIM_TEST_ARTEFACTS when set, else to the test's tmp_path."""

from __future__ import annotations

import functools
import http.server
import importlib.util
import json
import os
import re
import subprocess
import sys
import threading
import tomllib
from pathlib import Path

import pytest
import typer.main

from culturesim.cli import app
from culturesim.schema.config import StudyConfig
from tests.browser import Browser, artefacts_folder

ROOT = Path(__file__).parents[1]
DOCS = ROOT / "docs"


def _load(name: str):
    """A module of docs/_ext by its file (not put on sys.path, where its names would shadow others)."""
    spec = importlib.util.spec_from_file_location(f"culturesim_docs_{name}", DOCS / "_ext" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


study_reference = _load("study_reference")  # the generator of the study-file reference

PAGES = sorted(p for p in DOCS.rglob("*.md") if "_build" not in p.parts)
TUTORIALS = ("quickstart", "explore_results", "lineage_tree")
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.M | re.S)


def _commands() -> dict[str, set[str]]:
    """Every command of the CLI and the option names it accepts."""
    group = typer.main.get_command(app)
    return {
        name: {opt for param in command.params for opt in getattr(param, "opts", ()) if opt.startswith("-")}
        for name, command in group.commands.items()
    }


def _invocations(text: str) -> list[str]:
    """`culturesim ...` command lines in a page's shell blocks and inline code (comments cut off)."""
    found = []
    for language, body in FENCE.findall(text):
        if language in ("bash", "console", "shell", "sh", ""):
            found += [line.split("#")[0] for line in body.splitlines()]
    spans = re.findall(r"`([^`\n]+)`", FENCE.sub("", text))
    found += [span for span in spans if re.match(r"(\.venv/bin/)?culturesim ", span)]
    return [m.group(0) for line in found if (m := re.search(r"(?<![\w.-])culturesim [a-z][a-z-]*.*", line))]


def test_every_command_and_option_a_page_shows_exists() -> None:
    commands = _commands()
    seen = 0
    for page in PAGES:
        for line in _invocations(page.read_text(encoding="utf-8")):
            words = line.split()
            command = words[1]
            if command in ("COMMAND", "CHECK"):  # a placeholder in prose
                continue
            assert command in commands, f"{page.relative_to(ROOT)}: no command `culturesim {command}` ({line!r})"
            for option in (w.split("=")[0] for w in words[2:] if w.startswith("--")):
                assert option in commands[command], f"{page.relative_to(ROOT)}: `{command}` has no {option}"
            seen += 1
    assert seen > 40, "the pages show fewer culturesim commands than expected: is the scan broken?"


def _key_paths() -> set[str]:
    return set(study_reference.key_paths(study_reference.study_schema()))


def _keys(table: dict, prefix: str = "") -> list[str]:
    """Dotted key paths of a parsed TOML document; an array of tables adds its entries' keys."""
    paths = []
    for key, value in table.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            paths += _keys(value, f"{path}.") if not _free(path) else [f"{path}.<field>"]
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            for entry in value:
                paths += _keys(entry, f"{path}.") if not _free(path) else [f"{path}.<field>"]
        else:
            paths.append(path)
    return paths


def _free(path: str) -> bool:
    """Tables whose keys are dotted setting paths (checked as factors) or free names."""
    return path in ("conditions", "condition_sets", "design.parameters", "metrics.norm_axes")


def _factors(document: dict) -> list[str]:
    """The dotted settings that `[conditions]`, `[[condition_sets]]` and `[design.parameters]` vary."""
    factors = list(document.get("conditions", {}))
    factors += [key for entry in document.get("condition_sets", []) for key in entry if key != "label"]
    factors += list(document.get("design", {}).get("parameters", {}))
    return factors


def test_every_key_a_toml_snippet_sets_exists() -> None:
    known = _key_paths()
    snippets = 0
    for page in PAGES:
        for language, body in FENCE.findall(page.read_text(encoding="utf-8")):
            if language != "toml":
                continue
            document = tomllib.loads(body)
            where = page.relative_to(ROOT)
            for path in _keys(document):
                assert path in known, f"{where}: `{path}` is not a study-file key"
            for factor in _factors(document):
                assert factor in known, f"{where}: condition factor `{factor}` is not a study-file key"
            if "study" in document:  # a whole study: it must load
                StudyConfig.model_validate(document)
            snippets += 1
    assert snippets >= 8


def test_the_study_reference_lists_every_key_of_the_schema() -> None:
    schema = study_reference.study_schema()
    text = study_reference.markdown(schema)
    for path in study_reference.key_paths(schema):
        assert f"{{#{study_reference.anchor(path)}}}" in text, path
    for table in ("[study]", "[llm.engine]", "[[preregistration.hypotheses]]", "[design.parameters]"):
        assert f"## `{table}`" in text, table
    assert ("varies by condition" in text) == ("x-condition-factor" in json.dumps(schema))


# One table in both dialects the generator reads: pydantic's (`$defs`, `prefixItems`, `anyOf` with null)
# and draft-07 (`definitions`, `allOf` around a `$ref`, a list of `items`, the condition-factor flag).
PAIR = [{"type": "string"}, {"type": "string"}]
SHARE = {"type": "number", "minimum": 0, "exclusiveMaximum": 1, "default": 0.5, "description": "a share"}
PYDANTIC_SCHEMA = {
    "$defs": {"T": {"type": "object", "properties": {
        "pair": {"anyOf": [{"type": "array", "prefixItems": PAIR, "minItems": 2, "maxItems": 2}, {"type": "null"}],
                 "default": None, "description": "two <poles> of *one* axis"},
        "share": SHARE}}},
    "properties": {"t": {"$ref": "#/$defs/T"}},
}  # fmt: skip
DRAFT07_SCHEMA = {
    "definitions": {"T": {"type": "object", "properties": {
        "pair": {"type": "array", "items": PAIR, "additionalItems": False, "minItems": 2, "maxItems": 2,
                 "description": "two <poles> of *one* axis", "x-condition-factor": True},
        "share": {**SHARE, "x-condition-factor": False}}}},
    "properties": {"t": {"allOf": [{"$ref": "#/definitions/T"}], "description": "[t]: a table"}},
}  # fmt: skip


def test_the_generator_reads_both_schema_dialects() -> None:
    plain = study_reference.markdown(PYDANTIC_SCHEMA)
    assert "varies by condition" not in plain
    assert (
        r"| [`pair`]{#key-t-pair} | [string, string] (optional) | unset |  | two \<poles\> of \*one\* axis |" in plain
    )
    assert "| [`share`]{#key-t-share} | float | `0.5` | 0 ≤ x < 1 | a share |" in plain
    flagged = study_reference.markdown(DRAFT07_SCHEMA)
    assert r"\[t\]: a table" in flagged and "| varies by condition |" in flagged
    assert r"| [`pair`]{#key-t-pair} | [string, string] | unset |  | yes | two \<poles\>" in flagged
    assert "| [`share`]{#key-t-share} | float | `0.5` | 0 ≤ x < 1 | no | a share |" in flagged
    assert study_reference.models(DRAFT07_SCHEMA) == {"T": "table-t"}


# -- the built site, in a real browser ----------------------------------------------------------


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The site, built once for the module by the script `make docs` runs; or, where CULTURESIM_DOCS_SITE
    names a site `make docs` built from this tree (CI builds it first, then runs the tests), that one."""
    if built := os.environ.get("CULTURESIM_DOCS_SITE"):
        assert (Path(built) / "index.html").exists(), f"CULTURESIM_DOCS_SITE={built} holds no built site"
        return Path(built)
    out = tmp_path_factory.mktemp("docs")
    done = subprocess.run(
        [sys.executable, str(DOCS / "_ext" / "build_site.py"), "--out", str(out)], capture_output=True, text=True
    )
    assert done.returncode == 0, f"the docs build failed:\n{done.stdout[-6000:]}\n{done.stderr[-6000:]}"
    return out / "html"


@pytest.fixture(scope="module")
def server(site: Path):
    """The site served on the loopback (the search page fetches pages; a file:// page may not)."""
    handler = functools.partial(_QuietHandler, directory=str(site))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        """Requests are not the test's output."""


@pytest.mark.slow
def test_the_site_fetches_nothing_from_the_network(site: Path) -> None:
    """No script, stylesheet, image or frame comes from another host (no CDN, no MathJax)."""
    external = re.compile(r"<(script|link|img|iframe|source)\b[^>]*\b(src|href)=\"(https?:)?//", re.I)
    pages = list(site.rglob("*.html"))
    assert len(pages) > 25
    for page in pages:
        html = page.read_text(encoding="utf-8")
        assert not external.search(html), f"{page.relative_to(site)} loads from another host"
    for name in TUTORIALS:  # executed: each tutorial carries its outputs
        html = (site / "tutorials" / f"{name}.html").read_text(encoding="utf-8")
        assert "cell_output" in html and re.search(r'<img [^>]*src="\.\./_images/', html), name


BODY_TEXT = "document.querySelector('article.bd-article').innerText"


@pytest.mark.slow
def test_chromium_draws_the_pages_a_tutorial_figure_and_finds_a_key(server: str, browser: Browser, tmp_path) -> None:
    artefacts = artefacts_folder(tmp_path)
    for page, expected in (
        ("index.html", "culturesim simulates what happens to a human culture"),
        ("reference/study-file.html", "Study-file reference"),
        ("reference/cli.html", "culturesim run"),
        ("reference/api.html", "load_results"),
        ("explanation/validation.html", "Wright–Fisher"),
    ):
        browser.open(f"{server}/{page}")
        text = browser.js(BODY_TEXT)
        assert expected in text and len(text) > 1000, (page, text[:300])
        assert browser.problems(server) == [], page
        if page == "reference/study-file.html":
            assert browser.js("document.querySelectorAll('table.study-keys').length") >= 15
            assert browser.js("!!document.getElementById('key-study-replicates')")
            browser.screenshot(artefacts / "docs_study_file.png", height=1800)

    # A tutorial executed at build time: its printed output and its figures, images the browser loaded.
    browser.open(f"{server}/tutorials/quickstart.html")
    assert "quickstart - 4 runs, 2 generations" in browser.js(BODY_TEXT)
    images = browser.js(
        "[...document.querySelectorAll('.cell_output img')].map(i => [i.complete, i.naturalWidth, i.naturalHeight])"
    )
    assert len(images) >= 2 and all(done and w > 100 and h > 100 for done, w, h in images), images
    figure_top = browser.js("Math.max(0, document.querySelector('.cell_output img').getBoundingClientRect().top - 500)")
    browser.screenshot(artefacts / "docs_tutorial.png", top=figure_top, height=1800)
    assert browser.problems(server) == []

    # The search page runs Sphinx's search in the page: a study-file key finds the reference.
    browser.open(f"{server}/search.html?q=replicates")
    assert browser.wait("document.querySelectorAll('#search-results li').length > 0"), "search listed nothing"
    hrefs = browser.js("[...document.querySelectorAll('#search-results li a')].map(a => a.getAttribute('href'))")
    assert any(h.startswith("reference/study-file.html") for h in hrefs), hrefs
    assert any("#key-study-replicates" in h for h in hrefs), hrefs  # the key itself, as a search object
    browser.wait("document.querySelectorAll('#search-results li p.context').length > 0", tries=30)
    browser.screenshot(artefacts / "docs_search.png", height=1000)
    assert browser.problems(server) == []
