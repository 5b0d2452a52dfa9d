"""What researchers import: one place for the functions the analysis notebooks and paper scripts use.

The package is arranged in folders by layer (docs/architecture.md); those folders may move, this
module's names do not. Import from here in notebooks and scripts:

    from culturesim.api import load_results, latest_results, verdicts, trajectories
"""

from __future__ import annotations

from culturesim.parts.lineage import ancestry, most_widespread
from culturesim.reports.analysis_report import verdicts, write_analysis
from culturesim.reports.convention_figures import name_share_figure, tipping_figure
from culturesim.reports.explore import write_explorer
from culturesim.reports.figure_set import NotApplicable, draw_figure, save_figure, write_figures
from culturesim.reports.figures import lineage_tree, trajectories
from culturesim.schema.analysis_plan import Hypothesis, Preregistration
from culturesim.schema.config import StudyConfig, load_config, stored_config
from culturesim.stats.tipping import compare_tipping, fit_tipping
from culturesim.stats.tipping_runs import run_table
from culturesim.study.adapter_store import AdapterStore
from culturesim.study.planner import StudyPlan, plan_study
from culturesim.study.runner import StudyRunner
from culturesim.study.store import Results, latest_results, load_results

__all__ = [
    "AdapterStore",
    "Hypothesis",
    "NotApplicable",
    "Preregistration",
    "Results",
    "StudyConfig",
    "StudyPlan",
    "StudyRunner",
    "ancestry",
    "compare_tipping",
    "draw_figure",
    "fit_tipping",
    "latest_results",
    "lineage_tree",
    "load_config",
    "load_results",
    "most_widespread",
    "name_share_figure",
    "plan_study",
    "run_table",
    "save_figure",
    "stored_config",
    "tipping_figure",
    "trajectories",
    "verdicts",
    "write_analysis",
    "write_explorer",
    "write_figures",
]
