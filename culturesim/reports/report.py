"""A short Markdown report of a finished study: design, final values, throughput, figure."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import polars as pl

from culturesim.core.off_task import is_off_task
from culturesim.parts.traits import MACHINE_KINDS
from culturesim.reports.explore import EXPLORER_FILE
from culturesim.reports.figures import trajectories
from culturesim.schema.config import stored_config
from culturesim.study.store import read_manifest, write_text

SUMMARY_METRICS = ("semantic_diversity", "vendi", "distinct_traits", "machine_ancestry", "llm_trait_share")
FIGURE_NAME = "diversity.png"
# A coordination study's summary and figure: where the convention went, and how the LLM agents played.
CONVENTION_SUMMARY = ("committed_share", "dominant_share", "consensus", "names_in_use", "success_rate",
                      "llm_valid_share", "llm_first_option_share", "llm_best_response_share")  # fmt: skip
CONVENTION_FIGURE = "conventions.png"


def final_summary(metrics: pl.DataFrame, names: tuple[str, ...] = SUMMARY_METRICS) -> pl.DataFrame:
    """Mean, SD and replicate count of key metrics at the last generation, per condition."""
    last = metrics["generation"].max()
    return (
        metrics.filter((pl.col("generation") == last) & pl.col("metric").is_in(names))
        .group_by("condition", "metric")
        .agg(mean=pl.col("value").mean(), sd=pl.col("value").std(), replicates=pl.len())
        .sort("metric", "condition")
    )


def off_task_summary(traits: pl.DataFrame, population: pl.DataFrame) -> pl.DataFrame:
    """Per condition: share of machine-written traits that are meta-talk (all generations), and share of
    agents holding a meta-talk trait at the last generation (when the population table was saved)."""
    flagged = traits.with_columns(
        off_task=pl.col("text").map_elements(is_off_task, return_dtype=pl.Boolean),
        machine=pl.col("author_kind").is_in(sorted(MACHINE_KINDS)),
    )
    written = flagged.group_by("condition").agg(
        machine_traits=pl.col("machine").sum(),
        machine_off_task=(pl.col("off_task") & pl.col("machine")).sum() / pl.col("machine").sum().clip(1),
    )
    if population.is_empty():
        return written.sort("condition")
    last = population.filter(pl.col("generation") == population["generation"].max())
    held = (
        last.join(flagged.select("run_id", "trait_id", "condition", "off_task"), on=["run_id", "trait_id"])
        .group_by("condition")
        .agg(held_off_task=pl.col("off_task").mean())
    )
    return written.join(held, on="condition", how="left").sort("condition")


def _markdown_table(frame: pl.DataFrame) -> str:
    header = "| " + " | ".join(frame.columns) + " |\n|" + "---|" * len(frame.columns) + "\n"
    rows = ["| " + " | ".join(_cell(v) for v in row) + " |" for row in frame.iter_rows()]
    return header + "\n".join(rows) + "\n"


def _cell(value: object) -> str:
    """A table cell: floats to 4 significant digits, pipes escaped (a bare one would split the cell)."""
    return f"{value:.4g}" if isinstance(value, float) else str(value).replace("|", "\\|")


def _failures(metrics: pl.DataFrame) -> str:
    totals = (
        metrics.filter(pl.col("metric") == "llm_failures")
        .group_by("condition")
        .agg(pl.col("value").sum())
        .sort("condition")
    )
    return ", ".join(f"{c}: {int(v)}" for c, v in totals.iter_rows()) or "none"


def _ran_on(manifest: dict) -> str:
    """', ran as vllm on cpu': the engines the last session resolved the setting to (older folders: '')."""
    sessions = manifest.get("sessions") or [{}]
    ran = sessions[-1].get("devices", {}).get("llm")
    return f", ran as {ran}" if ran else ""


def _lock_line(manifest: dict) -> str:
    lock = manifest.get("lock")
    if lock is None:
        return "none (exploratory)"
    return f"locked {lock['locked_at']} (sha256 `{lock['sha256'][:12]}`)"


def _deviations(manifest: dict) -> str:
    items = manifest.get("deviations", [])
    if not items:
        return ""
    lines = "".join(f"- {d['reason']} (changed: {', '.join(d['changed_fields'])})\n" for d in items)
    return f"## Deviations from the preregistration\n\n{lines}\n"


def _explorer_link(folder: Path) -> str:
    """A link to the study explorer (`culturesim.reports.explore`), where the folder has one."""
    if not (folder / EXPLORER_FILE).exists():
        return ""
    return (
        f"Explore the runs (network, texts, lineages, curves) in [{EXPLORER_FILE}]({EXPLORER_FILE}): "
        "one self-contained page that opens from disk.\n\n"
    )


def write_report(folder: Path) -> Path:
    """report.md and the diversity figure for a results folder."""
    manifest = read_manifest(folder)
    metrics = pl.read_parquet(folder / "metrics.parquet")
    study = stored_config(manifest["config"])
    coordination = study.study.interaction == "coordination"
    figure_name, shown = (CONVENTION_FIGURE, "dominant_share") if coordination else (FIGURE_NAME, "semantic_diversity")
    fig = trajectories(metrics, shown)
    fig.savefig(folder / figure_name, dpi=200)
    plt.close(fig)
    throughput = manifest["throughput"]
    config = study.model_dump(mode="json")
    engine = config["llm"]["engine"]
    if coordination:
        body = (
            f"## Last round\n\n{_markdown_table(final_summary(metrics, CONVENTION_SUMMARY))}\n"
            f"## Share of the most common name over rounds\n\n![dominant share]({figure_name})\n\n"
        )
    else:
        traits, population = (pl.read_parquet(folder / f"{name}.parquet") for name in ("traits", "population"))
        body = (
            f"## Final generation\n\n{_markdown_table(final_summary(metrics))}\n"
            "## Off-task texts\n\nMachine-written traits that are talk about the task instead of a text "
            "(`culturesim.core.off_task` rules), and the share of agents holding one at the last generation:\n\n"
            f"{_markdown_table(off_task_summary(traits, population))}\n"
            f"## Diversity over generations\n\n![semantic diversity]({figure_name})\n\n"
        )
    text = (
        f"# {manifest['study']}{' (toy run)' if manifest.get('toy') else ''}\n\n{config['study']['description']}\n\n"
        f"- config hash: `{manifest['config_hash']}`\n"
        f"- preregistration: {_lock_line(manifest)}\n"
        f"- replicates: {config['study']['replicates']}, generations: {config['study']['generations']}, "
        f"agents: {config['population']['size']}, network: {config['network']['kind']}\n"
        f"- conditions: {', '.join(sorted({r['condition'] for r in manifest['runs']}))}\n"
        f"- LLM: {engine['model']} (backend {engine['backend']}{_ran_on(manifest)}); "
        f"embedder: {manifest['embedder']}\n\n"
        f"{_deviations(manifest)}{_explorer_link(folder)}"
        f"{body}"
        "## Throughput\n\n"
        f"- wall time: {throughput['wall_seconds']:.1f} s\n"
        f"- LLM: {throughput['llm_tokens']} tokens in {throughput['llm_seconds']:.1f} s "
        f"({throughput['llm_tokens_per_second']:.1f} tokens/s); {throughput['llm_requests']} requests "
        f"({throughput['llm_unique_requests']} distinct) in {throughput['llm_calls']} engine calls; "
        f"{throughput.get('llm_from_log', 0)} of {throughput.get('llm_attempts', 0)} attempts answered by the log\n"
        f"- LLM prompts: {throughput.get('llm_prompt_tokens', 0)} prompt tokens, "
        f"{throughput.get('llm_prompt_tokens_reused', 0)} of them reused from the engine's prefix cache\n"
        f"- unusable LLM answers: {throughput.get('llm_retries', 0)} retried with new seeds; "
        f"{_failures(metrics)} still unusable (agent kept its trait)\n"
        f"- embeddings: {throughput['embedded_texts']} distinct texts embedded for "
        f"{throughput['embedding_requests']} requested ({throughput['embedded_texts_per_second']:.0f} texts/s)\n"
    )
    path = folder / "report.md"
    write_text(text, path)
    return path
