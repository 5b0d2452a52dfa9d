"""Pages whose body is generated at build time from the code, so it cannot drift from it.

A page names what goes where with a block

    ```{generated} study-file
    ```

which this extension replaces, as the page is read, with Markdown made now:

- `study-file`: the study-file reference, from the study file's JSON schema (`study_reference.py`);
- `cli`: every command and option of the command line, from typer (`typer culturesim.cli utils docs`);
- `odd STUDY`: the ODD protocol description of a study file (`culturesim describe STUDY`);
- `results-tree`: the files of the results folder the tutorials analyse (`CULTURESIM_RESULTS`, the toy
  run `make docs` makes), with their sizes. Pages are read in sorted order, so getting-started/ lists
  the folder before the tutorials add their figures to it.

A block this extension does not replace stays an unknown directive, which fails the strict build.
Generated pages are read again on every build (`env-get-outdated`), since the code they come from
is not one of Sphinx's sources.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from functools import cache
from pathlib import Path

import study_reference
from docutils import nodes
from sphinx.application import Sphinx
from sphinx.errors import ExtensionError

ROOT = Path(__file__).resolve().parents[2]
BLOCK = re.compile(r"^```\{generated\}[ \t]+(?P<what>[\w-]+)(?:[ \t]+(?P<argument>\S+))?[ \t]*\n```[ \t]*$", re.M)
FENCE = re.compile(r"^(```|~~~)")


def _command(*args: str) -> str:
    """The output of a command run from the repository root with this Python; its error fails the build."""
    done = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise ExtensionError(f"{' '.join(args)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return done.stdout


@cache
def _schema() -> dict:
    return study_reference.study_schema()


def demote(markdown: str, *, top: int = 2, drop_title: bool = False) -> str:
    """Headings moved down so that the highest is level `top` (code fences left alone);
    `drop_title` removes the first heading (the page has its own title)."""
    lines, fenced, levels = markdown.splitlines(), False, []
    for line in lines:
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced and (match := re.match(r"^(#+) ", line)):
            levels.append(len(match.group(1)))
    if drop_title and levels:
        levels = levels[1:]
    shift = top - min(levels) if levels else 0
    out, fenced, dropped = [], False, not drop_title
    for line in lines:
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced and (match := re.match(r"^(#+) ", line)):
            if not dropped:
                dropped = True
                continue
            line = "#" * (len(match.group(1)) + shift) + line[len(match.group(1)) :]
        out.append(line)
    return "\n".join(out) + "\n"


def cli_reference() -> str:
    text = _command("-m", "typer", "culturesim.cli", "utils", "docs", "--name", "culturesim")
    return demote(text, drop_title=True)


def odd(study: str) -> str:
    return demote(_command("-m", "culturesim.cli", "describe", study))


def results_tree() -> str:
    """The results folder as a tree, files with their sizes (lock files included: they are part of it);
    of the runs/ folders, which hold the same files each, the first is shown whole."""
    folder = Path(os.environ["CULTURESIM_RESULTS"])
    lines = [f"{folder.parent.name}/{folder.name}/"]

    def walk(path: Path, prefix: str) -> None:
        entries = sorted(path.iterdir(), key=lambda p: (p.is_dir(), p.name))
        for index, entry in enumerate(entries):
            last = index == len(entries) - 1
            branch, indent = ("└── ", "    ") if last else ("├── ", "│   ")
            if entry.is_dir():
                lines.append(f"{prefix}{branch}{entry.name}/")
                if path.name == "runs" and index > 0:
                    lines[-1] += "  (the same files)"
                else:
                    walk(entry, prefix + indent)
            else:
                lines.append(f"{prefix}{branch}{entry.name}  ({_size(entry.stat().st_size)})")

    walk(folder, "")
    return "```text\n" + "\n".join(lines) + "\n```\n"


def _size(size: int) -> str:
    return f"{size} B" if size < 1000 else f"{size / 1000:.1f} kB" if size < 1_000_000 else f"{size / 1e6:.1f} MB"


GENERATORS = {
    "study-file": lambda argument: study_reference.markdown(_schema()),
    "cli": lambda argument: cli_reference(),
    "odd": odd,
    "results-tree": lambda argument: results_tree(),
}


def _fill(app: Sphinx, docname: str, source: list[str]) -> None:
    def replace(match: re.Match) -> str:
        what = match.group("what")
        if what not in GENERATORS:
            return match.group(0)  # left as an unknown directive: the strict build fails on it
        return GENERATORS[what](match.group("argument"))

    source[0] = BLOCK.sub(replace, source[0])


def _always_outdated(app: Sphinx, env, added: set[str], changed: set[str], removed: set[str]) -> list[str]:
    """Pages with generated bodies, read again every build (their source is the code, not the page)."""
    return [name for name in env.found_docs if _has_block(env.doc2path(name))]


def _has_block(path: Path) -> bool:
    try:
        return BLOCK.search(Path(path).read_text(encoding="utf-8")) is not None
    except (OSError, UnicodeDecodeError):
        return False


@cache
def _key_ids() -> dict[str, str]:
    return {study_reference.anchor(path): path for path in study_reference.key_paths(_schema())}


def _note_study_keys(app: Sphinx, doctree: nodes.document) -> None:
    """Register each study-file key's row (an element with its anchor id) as a `studykey` object."""
    ids = _key_ids()
    std = app.env.domains.standard_domain
    for node in doctree.findall(nodes.Element):
        for node_id in node.get("ids", ()):
            if node_id in ids:
                std.note_object("studykey", ids[node_id], node_id, location=node)


def _link_section_classes(app: Sphinx, env, node: nodes.Element, contnode: nodes.Node) -> nodes.Node | None:
    """A reference to a study-file section's class (`culturesim.schema.<module>.EngineSection`) in a
    signature links to that table in the study-file reference, which documents every key of it."""
    target = node.get("reftarget", "")
    if node.get("refdomain") != "py" or not target.startswith("culturesim.schema."):
        return None
    label = study_reference.models(_schema()).get(target.rsplit(".", 1)[-1])
    if label is None:
        return None
    std = env.domains.standard_domain
    return std.resolve_xref(env, node["refdoc"], app.builder, "ref", label, node, contnode)


def setup(app: Sphinx) -> dict:
    app.add_object_type("studykey", "studykey", objname="study-file key")
    app.connect("source-read", _fill)
    app.connect("env-get-outdated", _always_outdated)
    app.connect("doctree-read", _note_study_keys)
    app.connect("missing-reference", _link_section_classes)
    return {"version": "1", "parallel_read_safe": False, "parallel_write_safe": True}
