"""Sphinx configuration of the culturesim documentation site.

Build it with `make docs` (docs/_ext/build_site.py): a toy run of studies/quickstart.toml first, then
`sphinx-build -W --keep-going -n` (warnings are errors, every reference must resolve), with the
tutorials (analysis/*.py, linked into tutorials/) executed against that run. Nothing is fetched
from the network, at build time or when a page is read: no intersphinx, no CDN, math as MathML.
"""

from __future__ import annotations

import os
import sys
from importlib import metadata
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS / "_ext"))

if not os.environ.get("CULTURESIM_RESULTS"):
    raise RuntimeError(
        "CULTURESIM_RESULTS is not set: the tutorials run against a results folder. "
        "Build the site with `make docs` (python docs/_ext/build_site.py), which makes a toy run first."
    )

project = "culturesim"
author = "the culturesim authors"
copyright = "the culturesim authors, Apache-2.0"  # noqa: A001 (Sphinx's name)
release = version = metadata.version("culturesim")

extensions = [
    "myst_nb",  # Markdown pages and notebooks (it sets up myst_parser too)
    "sphinx.ext.autodoc",
    "sphinx_copybutton",
    "sphinx_design",  # the cards of the front page
    "generated",  # docs/_ext: the study-file reference, the command line and the ODD, made at build time
    "mathml",  # docs/_ext: math as MathML, no MathJax from a CDN
]

# The tutorials are the analysis notebooks themselves (jupytext percent scripts, symlinked into
# tutorials/), executed on every build: a notebook that raises fails the build, and none is shown
# without its outputs.
nb_custom_formats = {".py": ["jupytext.reads", {"fmt": "py:percent"}]}
nb_execution_mode = "force"
nb_execution_raise_on_error = True
nb_execution_show_tb = True
nb_execution_timeout = 600  # seconds per cell; the first imports torch and the study's tables
nb_merge_streams = True
nb_output_stderr = "remove"  # library warnings (matplotlib layout, vLLM) are not part of a tutorial
nb_kernel_rgx_aliases = {".*": "python3"}

myst_enable_extensions = ["dollarmath", "colon_fence", "deflist", "attrs_inline", "attrs_block"]
myst_heading_anchors = 3
myst_dmath_double_inline = True

exclude_patterns = ["_build", "_ext", "conf.py", "**/.ipynb_checkpoints"]

# The Python API: culturesim.api, which re-exports what notebooks and scripts use.
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_format = "short"
autodoc_class_signature = "mixed"
autodoc_default_options = {"members": True}
add_module_names = False
default_role = "code"  # docstrings write `name` for code, as Markdown does

# Strict references (-n) within the site. Without intersphinx (nothing is fetched), types of other
# packages cannot resolve; every reference into culturesim must.
nitpick_ignore_regex = [
    (r"py:.*", r"(?!culturesim\b)[\w.]+"),
]

html_theme = "pydata_sphinx_theme"
html_title = f"culturesim {release}"
html_theme_options = {
    "navbar_align": "left",
    "show_toc_level": 2,
    "navigation_depth": 3,
    "show_nav_level": 1,
    "footer_start": ["copyright"],
    "footer_end": [],
    "secondary_sidebar_items": ["page-toc"],
    "use_edit_page_button": False,
}
html_context = {"default_mode": "auto"}  # unset, the theme's script logs a console error on a first visit
html_sidebars = {"index": [], "reference/study-file": [], "explanation/validation": []}  # wide tables: no left sidebar
html_static_path = ["_static"]
html_css_files = ["culturesim.css"]
html_favicon = "_static/favicon.svg"
html_math_renderer = "mathml"
html_show_sourcelink = False
html_copy_source = False

copybutton_prompt_text = r"\$ "
copybutton_prompt_is_regexp = True
