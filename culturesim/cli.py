"""The `culturesim` command line: thin typer commands over the library."""

from __future__ import annotations

import sys
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from culturesim.schema.config import ConfigError, load_config

app = typer.Typer(help="Simulate cultures of texts in mixed human/LLM populations.", no_args_is_help=True)
console = Console(stderr=True)
VERBOSE_HELP = "show the start-up warnings and logs of vLLM, torch and transformers (errors always show)"


def _fail(exc: Exception) -> None:
    console.print(f"[red]{type(exc).__name__}:[/red] {escape(str(exc))}", soft_wrap=True)
    raise typer.Exit(2)


@app.callback()
def main() -> None:
    """culturesim: cultural evolution of texts with model humans and LLM agents."""


@app.command()
def run(
    study: Path = typer.Argument(..., help="study TOML file, e.g. studies/quickstart.toml"),
    out: Path = typer.Option(Path("results"), "--out", help="root folder for results/<study>/<hash12>/"),
    resume: bool = typer.Option(False, "--resume", help="finish an interrupted study, skipping finished runs"),
    workers: int = typer.Option(1, "--workers", min=1, help="processes running batches of runs in parallel"),
    batch_runs: int = typer.Option(
        0, "--batch-runs", min=0, help="runs advanced in lockstep per batch (0: all runs of a worker with LLMs, else 1)"
    ),
    executor: str = typer.Option("local", "--executor", help="local (process pool) or ray"),
    address: str = typer.Option("", "--address", help="Ray cluster address (default: start a local Ray)"),
    engines: int = typer.Option(
        0, "--engines", min=0, help="Ray engine actors for an LLM study (0: one per GPU, one on a CPU cluster)"
    ),
    deviation: str = typer.Option("", "--deviation", help="reason for running a config that differs from its lock"),
    toy: bool = typer.Option(False, "--toy", help="tiny smoke-test version: 16 agents, 2 generations, 2 replicates"),
    dry_run: bool = typer.Option(False, "--dry-run", help="print the study's size (runs, requests, tables) and exit"),
    verbose: bool = typer.Option(False, "--verbose", help=VERBOSE_HELP),
) -> None:
    """Run every condition x replicate of a study and write results, a report and a figure.

    Progress (attractor calibration, engine start, run-generations) goes to stderr: bars on a
    terminal, a plain line at least every 30 s elsewhere (a log file, CI, nohup)."""
    from culturesim.core.quiet import quiet_third_party

    with quiet_third_party(enabled=not verbose):  # before torch is imported: its C++ warnings read it then
        _run(study, out, resume, workers, batch_runs, executor, address, engines, deviation, toy, dry_run, verbose)


def _run(study, out, resume, workers, batch_runs, executor, address, engines, deviation, toy, dry_run, verbose) -> None:
    """The body of `run` (its options, in order)."""
    from culturesim.core.progress import progress_display
    from culturesim.parts.llm.base import EngineError
    from culturesim.reports.explore import write_run_explorer
    from culturesim.reports.report import write_report
    from culturesim.study.holder import FolderHeldError
    from culturesim.study.prereg import check_lock, read_lock
    from culturesim.study.runner import StudyRunner
    from culturesim.study.sizing import check_disk, plan_table
    from culturesim.study.store import StorageError

    runner = StudyRunner()
    try:
        config = load_config(study)
        lock = read_lock(study)
        if toy:
            config, deviation_record = config.toy(), None
        else:
            deviation_record = check_lock(config, study, deviation=deviation or None)
        plan = runner.plan(config, out_root=out, batch_runs=batch_runs or None)  # what the run below executes
        console.print(plan_table(plan.size, wall_time=plan.estimate.describe()))
        check_disk(plan.size, out)
        if dry_run:
            return
        with progress_display(sys.stderr, quiet=not verbose) as progress:
            folder = runner.run(
                config,
                out_root=out,
                resume=resume,
                workers=workers,
                batch_runs=batch_runs or None,
                executor=executor,
                address=address or None,
                engines=engines or None,
                deviation=deviation_record,
                lock={k: v for k, v in lock.items() if k != "config"} if lock and not toy else None,
                toy=toy,
                progress=progress,
                plan=plan,
            )
        write_run_explorer(folder, config)  # before the report, which links it
        report = write_report(folder)
    except (ConfigError, FolderHeldError) as exc:
        _fail(exc)
    except EngineError as exc:
        console.print(f"[red]the LLM engine failed:[/red] {escape(str(exc))}", soft_wrap=True)
        console.print("finished runs and the completion log are saved; continue with --resume once it answers")
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        console.print("[yellow]interrupted:[/yellow] finished runs and the completion log are saved; "
                      "continue with --resume")  # fmt: skip
        raise typer.Exit(130) from None
    except BrokenProcessPool:
        console.print("[red]a worker process died:[/red] finished runs are saved; continue with --resume")
        raise typer.Exit(1) from None
    except StorageError as exc:  # the disk refused a write: what, how much space, and how to go on
        console.print(f"[red]{type(exc).__name__}:[/red] {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(1) from None
    finally:
        runner.close()
    console.print(f"results: {folder}\nreport:  {report}")


@app.command()
def describe(
    study: Path = typer.Argument(..., help="study TOML file"),
    out: Path = typer.Option(None, "--out", help="write the Markdown here instead of printing it"),
) -> None:
    """The study's ODD protocol description (Grimm et al. 2020) as Markdown; `run` writes it as odd.md."""
    from culturesim.study.odd import describe as odd
    from culturesim.study.planner import plan_study

    try:
        text = odd(plan_study(load_config(study)))
    except ConfigError as exc:
        _fail(exc)
    if out is None:
        typer.echo(text, nl=False)
    else:
        out.write_text(text, encoding="utf-8")
        console.print(f"ODD description: {out}")


@app.command()
def replay(
    results: Path = typer.Argument(..., help="a results folder results/<study>/<hash12>/"),
    out: Path = typer.Option(None, "--out", help="folder for the replayed tables (default: RESULTS/replay)"),
    study: Path = typer.Option(None, "--study", help="a study file to replay instead of the recorded config"),
) -> None:
    """Recompute a study from its completion log and stored vectors, with no LLM or embedder loaded."""
    from culturesim.calibration.attractor import MissingCalibration
    from culturesim.parts.vectors import MissingVector
    from culturesim.simulation.completions import MissingCompletion
    from culturesim.study.holder import FolderHeldError
    from culturesim.study.runner import StudyRunner
    from culturesim.study.store import StorageError

    target = out or results / "replay"
    try:
        config = load_config(study) if study is not None else None
        folder = StudyRunner().replay(results, target, config=config)
    except (ConfigError, FileNotFoundError, FolderHeldError, MissingCalibration, MissingCompletion,
            MissingVector, StorageError) as exc:  # fmt: skip
        _fail(exc)
    console.print(f"replayed: {folder}")


@app.command()
def calibrate(
    study: Path = typer.Argument(..., help="study TOML file"),
    force: bool = typer.Option(False, "--force", help="calibrate again even when cached"),
    verbose: bool = typer.Option(False, "--verbose", help=VERBOSE_HELP),
) -> None:
    """Calibrate the LLM's attractor for each condition of a study (pure-LLM reference chains), into the cache.

    `run` does this on first use; this command does it ahead of time and prints each calibration's key and cost."""
    from culturesim.core.progress import progress_display
    from culturesim.core.quiet import quiet_third_party

    with quiet_third_party(enabled=not verbose):
        from culturesim.study.runner import StudyRunner

        runner = StudyRunner()
        try:
            plan = runner.plan(load_config(study), force=force)
            with progress_display(sys.stderr, quiet=not verbose) as progress:
                found = runner.calibrate(plan, progress=progress)
        except ConfigError as exc:
            _fail(exc)
    if not found:
        console.print("a human-only study has no attractor to calibrate")
    for record, origin in found:
        spec = record["spec"]
        distances = ", ".join(f"{d:.3f}" for d in record["centroid_distance"])
        typer.echo(
            f"{record['key']} ({origin}): {spec['engine']}, role {spec['role']}, temperature {spec['temperature']}, "
            f"corpus {spec['corpus']}: {record['requests']} requests in {record['seconds']:.1f} s; "
            f"chain centroid distance to the attractor by generation: {distances}"
        )


@app.command()
def preregister(study: Path = typer.Argument(..., help="study TOML file with a [preregistration] section")) -> None:
    """Freeze a study's plan into STUDY.lock.json (sha256 of the canonical config)."""
    from culturesim.study.prereg import write_lock

    try:
        path = write_lock(load_config(study), study)
    except ConfigError as exc:
        _fail(exc)
    console.print(f"locked: {path}")


@app.command()
def verify(results: Path = typer.Argument(..., help="a results folder results/<study>/<hash12>/")) -> None:
    """Recompute the hashes of the config and the result files; exit 1 on any mismatch."""
    from culturesim.study.verify import verify_results

    try:
        problems, checked = verify_results(results)
    except (ConfigError, FileNotFoundError) as exc:
        _fail(exc)
    for line in checked:
        console.print(f"[green]ok[/green]   {line}")
    for line in problems:
        console.print(f"[red]FAIL[/red] {line}")
    if problems:
        raise typer.Exit(1)


@app.command()
def status(results: Path = typer.Argument(..., help="a results folder results/<study>/<hash12>/")) -> None:
    """Show which runs have finished, which are missing, and the recorded deviations."""
    from culturesim.study.store import finished_runs, read_manifest

    try:
        manifest = read_manifest(results)
    except FileNotFoundError as exc:
        _fail(exc)
    done = finished_runs(results)
    table = Table(title=f"{manifest['study']} ({manifest['status']})")
    for column in ("run", "condition", "replicate", "status"):
        table.add_column(column)
    for run in manifest["runs"]:
        table.add_row(
            run["run_id"], run["condition"], str(run["replicate"]), "done" if run["run_id"] in done else "missing"
        )
    Console().print(table)
    missing = len(manifest["runs"]) - len(done)
    typer.echo(
        f"{len(done)} finished, {missing} missing"
        + ("; finish with `culturesim run STUDY --resume`" if missing else "")
    )
    plan = manifest.get("plan")  # the plan the study ran by (`culturesim.study.planner.StudyPlan.summary`)
    if plan:
        batches = sum(len(group["batches"]) for group in plan["groups"])
        typer.echo(f"plan: {plan['runs']} runs in {len(plan['groups'])} engine group(s), {batches} lockstep batch(es)")
        for item in plan["calibrations"]:
            typer.echo(f"calibration {item['key']} ({item['role']}): from {item['from']}")
    for item in manifest.get("deviations", []):
        typer.echo(f"deviation: {item['reason']} (changed: {', '.join(item['changed_fields'])})")


@app.command()
def analyze(results: Path = typer.Argument(..., help="a results folder results/<study>/<hash12>/")) -> None:
    """Test the preregistered hypotheses; write analysis/report.md and a self-contained report.html."""
    from culturesim.reports.analysis_report import write_analysis

    try:
        report = write_analysis(results)
    except (ConfigError, FileNotFoundError) as exc:
        _fail(exc)
    console.print(f"report: {report}\nhtml:   {report.with_suffix('.html')}")


@app.command()
def power(
    study: Path = typer.Argument(..., help="study TOML file with a [preregistration] section"),
    pilot: int = typer.Option(3, "--pilot", min=2, help="replicates per condition in the pilot"),
    out: Path = typer.Option(Path("results"), "--out", help="root folder for the pilot's results"),
    max_replicates: int = typer.Option(
        60,
        "--max-replicates",
        min=2,
        help="largest runs per arm to evaluate (a replicate adds one per condition of an arm)",
    ),
    simulations: int = typer.Option(1000, "--simulations", min=100, help="simulated studies per replicate count"),
) -> None:
    """Estimate the replicates each confirmatory hypothesis needs for 80 % power, from a pilot run.

    The pilot is an exploratory study of its own (own hash, no lock); the study file is never changed.
    """
    from culturesim.reports.power import pilot_power
    from culturesim.study.runner import StudyRunner

    runner = StudyRunner()
    try:
        config = load_config(study)
        table, folder = pilot_power(
            config, runner=runner, pilot=pilot, out_root=out, max_replicates=max_replicates, simulations=simulations
        )
    except ConfigError as exc:
        _fail(exc)
    finally:
        runner.close()
    Console().print(table)
    console.print(f"pilot results and power.json: {folder}")


@app.command()
def figures(
    results: Path = typer.Argument(..., help="a results folder results/<study>/<hash12>/"),
    format: str = typer.Option("png", "--format", help="comma-separated: pdf,png,svg"),
) -> None:
    """Draw every figure of a study into RESULTS/figures/ with figures.json (data hashes)."""
    from culturesim.reports.figure_set import write_figures

    try:
        folder = write_figures(results, formats=tuple(f.strip() for f in format.split(",") if f.strip()))
    except (ConfigError, FileNotFoundError, ValueError) as exc:
        _fail(exc)
    console.print(f"figures: {folder}")


@app.command()
def explore(
    results: Path = typer.Argument(..., help="a results folder results/<study>/<hash12>/"),
    out: Path = typer.Option(None, "--out", help="the HTML file to write (default: RESULTS/explorer.html)"),
) -> None:
    """Write one self-contained HTML page to explore a study: network, texts, lineages, curves per run.

    It opens from disk with no server and no network (Plotly and the data are inlined)."""
    from culturesim.reports.explore import write_explorer

    try:
        path = write_explorer(results, out=out)
    except (ConfigError, FileNotFoundError, ValueError) as exc:
        _fail(exc)
    console.print(f"explorer: {path}")


@app.command()
def validate(
    check: str = typer.Argument(
        ..., help="neutral | conformity | network | conventions | retraining | chains | on-task"
    ),
    replicates: int | None = typer.Option(
        None, "--replicates", min=2, help="independent replicates per cell (default 20; retraining: 2000)"
    ),
    chains_count: int = typer.Option(20, "--chains", min=3, help="built-in stories (one chain each) for `chains`"),
    generations: int = typer.Option(10, "--generations", min=2, help="chain generations for `chains`"),
    temperature: float = typer.Option(None, "--temperature", min=0.0, help="sampling temperature for `chains`"),
    completions: int = typer.Option(500, "--completions", min=1, help="completions per role for `on-task`"),
    corpus: str = typer.Option("builtin", "--corpus", help="on-task corpus: 'builtin' or a CSV/JSONL/Parquet file"),
    verbose: bool = typer.Option(False, "--verbose", help=VERBOSE_HELP),
) -> None:
    """Check the simulator against theory (neutral, conformity, network; conventions: the coordination game
    against naming-game theory; retraining: the data regimes of retraining against exact model-collapse
    theory), published LLM results (chains), or how on-task the LLM agents write per role (on-task:
    meta-talk, verbatim copies, parent similarity)."""
    from culturesim.core.quiet import quiet_third_party

    with quiet_third_party(enabled=not verbose):
        _validate(check, replicates, chains_count, generations, temperature, completions, corpus, verbose)


def _start_engine(spec, *, verbose: bool):
    """The engine of `validate chains` / `on-task`; without --verbose its start-up output on Python's
    stderr is held back (shown if the start fails)."""
    from contextlib import nullcontext

    from culturesim.core.quiet import muted_stderr
    from culturesim.parts.llm import create_backend

    with nullcontext() if verbose else muted_stderr():
        return create_backend(spec, seed=0)


def _validate(check, replicates, chains_count, generations, temperature, completions, corpus, verbose) -> None:
    """The body of `validate` (its options, in order)."""
    from culturesim.checks import validate as checks

    if replicates is None:
        replicates = 2000 if check == "retraining" else 20  # retraining's replicates are cheap (numpy learners)
    if check == "neutral":
        table = checks.neutral([(50, 0.005), (50, 0.02), (100, 0.005), (100, 0.02)], replicates=replicates)
    elif check == "conformity":
        table = checks.conformity([0.0, 0.5, 1.0, 2.0, 4.0], [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9])
        typer.echo(checks.format(table))
        table = checks.conformity_ordering(replicates=replicates)
    elif check == "network":
        table = checks.network_effect(replicates=replicates)
    elif check == "conventions":
        from culturesim.checks.validate_conventions import check_conventions, format_report

        table = format_report(check_conventions(replicates=replicates))
    elif check == "retraining":
        from culturesim.checks.validate_retraining import check_retraining

        table = check_retraining(replicates=replicates)
    elif check == "chains":
        from culturesim.checks.chains import compare_roles, story_sample
        from culturesim.parts.embed import Embedder
        from culturesim.schema.config import EmbeddingSection
        from culturesim.schema.llm_section import LLMSection
        from culturesim.schema.sampling import Sampling

        spec = LLMSection() if temperature is None else LLMSection(sampling=Sampling(temperature=temperature))
        backend = _start_engine(spec.engine, verbose=verbose)
        try:
            table = compare_roles(
                backend, Embedder(EmbeddingSection()), initial_texts=story_sample(chains_count),
                generations=generations, sampling=spec.sampling, prompt=spec.prompt,
            )  # fmt: skip
        finally:
            backend.close()
    elif check == "on-task":
        from culturesim.checks.on_task_check import check_roles
        from culturesim.parts.corpus import load_corpus
        from culturesim.parts.embed import Embedder
        from culturesim.schema.config import CorpusSection, EmbeddingSection
        from culturesim.schema.llm_section import LLMSection

        spec = LLMSection()
        try:
            texts = load_corpus(CorpusSection(source=corpus))["text"].to_list()
        except ConfigError as exc:
            _fail(exc)
        backend = _start_engine(spec.engine, verbose=verbose)
        try:
            table, _ = check_roles(backend, Embedder(EmbeddingSection()), texts, count=completions, spec=spec)
        finally:
            backend.close()
    else:
        choices = "neutral, conformity, network, conventions, retraining, chains or on-task"
        _fail(ConfigError(f"unknown check {check!r}; choose {choices}"))
    typer.echo(checks.format(table))


@app.command()
def schema(
    out: Path = typer.Option(None, "--out", help="write the JSON Schema here instead of printing it"),
) -> None:
    """The JSON Schema of a study file, for editors and taplo (a study's `#:schema ./study.schema.json` line)."""
    from culturesim.schema.json_schema import schema_text

    text = schema_text()
    if out is None:
        typer.echo(text, nl=False)
    else:
        out.write_text(text, encoding="utf-8")
        console.print(f"study file schema: {out}")


@app.command()
def new(
    name: str = typer.Argument(..., help="the study's name (letters, digits, _ . -); writes NAME.toml"),
    out: Path = typer.Option(None, "--out", help="the study file to write (default: NAME.toml here)"),
) -> None:
    """Write a commented study file to start from, and study.schema.json beside it (never overwrites a study)."""
    from culturesim.schema.starter import write_starter

    try:
        written = write_starter(name, out or Path(f"{name}.toml"))
    except ConfigError as exc:
        _fail(exc)
    for path in written:
        console.print(f"wrote {path}")


@app.command()
def metrics() -> None:
    """List the metrics a study can record."""
    from culturesim.parts.metrics import available_metrics

    for name in available_metrics():
        typer.echo(name)


if __name__ == "__main__":
    app()
