"""The `culturesim` command line: thin typer commands over the library."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from culturesim.config import ConfigError, load_config

app = typer.Typer(help="Simulate cultures of texts in mixed human/LLM populations.", no_args_is_help=True)
console = Console(stderr=True)


@app.callback()
def main() -> None:
    """culturesim: cultural evolution of texts with model humans and LLM agents."""


@app.command()
def run(
    study: Path = typer.Argument(..., help="study TOML file, e.g. studies/quickstart.toml"),
    out: Path = typer.Option(Path("results"), "--out", help="root folder for results/<study>/<hash12>/"),
) -> None:
    """Run every condition x replicate of a study and write results, a report and a figure."""
    from culturesim.report import write_report
    from culturesim.study.runner import StudyRunner

    try:
        config = load_config(study)
    except ConfigError as exc:
        console.print(f"[red]ConfigError:[/red] {exc}")
        raise typer.Exit(2) from None
    runner = StudyRunner()
    runs = len(config.condition_grid()) * config.study.replicates
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    try:
        with Progress(*columns, console=console) as progress:
            task = progress.add_task(f"{config.study.name}: {runs} runs", total=config.study.generations)

            def advance(generation: int, stats) -> None:
                progress.update(
                    task,
                    completed=generation,
                    description=f"{config.study.name}: {runs} runs, LLM {stats.tokens_per_second():.0f} tok/s",
                )

            folder = runner.run(config, out_root=out, on_generation=advance)
        report = write_report(folder)
    except ConfigError as exc:
        console.print(f"[red]ConfigError:[/red] {exc}")
        raise typer.Exit(2) from None
    finally:
        runner.close()
    console.print(f"results: {folder}\nreport:  {report}")


@app.command()
def metrics() -> None:
    """List the metrics a study can record."""
    from culturesim.metrics import available_metrics

    for name in available_metrics():
        typer.echo(name)
