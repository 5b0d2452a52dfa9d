"""Math as MathML, converted at build time (latex2mathml): the browser draws it with no script.

Sphinx's default, MathJax, loads its script from a CDN; this site fetches nothing from the network,
so `html_math_renderer = "mathml"` turns every `$...$` and `$$...$$` into MathML in the page itself
(drawn natively by Chromium 109+, Firefox and Safari). A formula latex2mathml cannot read fails the
build, naming the page.
"""

from __future__ import annotations

from docutils import nodes
from latex2mathml.converter import convert
from sphinx.application import Sphinx
from sphinx.errors import ExtensionError
from sphinx.writers.html5 import HTML5Translator


def _mathml(latex: str, *, display: str, where: nodes.Node) -> str:
    try:
        return convert(latex, display=display)
    except Exception as exc:  # latex2mathml raises many kinds; each is a formula it cannot read
        raise ExtensionError(f"{where.source}:{where.line}: cannot convert formula {latex!r}: {exc}") from exc


def visit_math(self: HTML5Translator, node: nodes.math) -> None:
    self.body.append(f'<span class="math">{_mathml(node.astext(), display="inline", where=node)}</span>')
    raise nodes.SkipNode


def visit_displaymath(self: HTML5Translator, node: nodes.math_block) -> None:
    number = node.get("number")
    label = f'<span class="eqno">({number})</span>' if number else ""
    ids = f' id="{node["ids"][0]}"' if node.get("ids") else ""
    formula = _mathml(node.astext(), display="block", where=node)
    self.body.append(f'<div class="math-display"{ids}>{formula}{label}</div>\n')
    raise nodes.SkipNode


def setup(app: Sphinx) -> dict:
    app.add_html_math_renderer("mathml", (visit_math, None), (visit_displaymath, None))
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
