"""The off-task rules against a labelled set the project wrote, and the off_task metric and summary."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl

from culturesim.core.off_task import RULES, off_task_rule
from culturesim.parts.metrics import MetricInput, compute_metrics
from culturesim.reports.report import off_task_summary

DATA = Path(__file__).parent / "data"
# Texts the project wrote (meta-talk modelled on chatbot habits, and culture texts that mention
# texts, stories or translations), and 166 completions of the built-in model labelled by hand.
LABELS = [json.loads(line) for line in (DATA / "off_task_labels.jsonl").open()]
REAL = [json.loads(line) for line in (DATA / "off_task_real_labels.jsonl").open()]


def _precision_recall(rows) -> tuple[float, float]:
    predicted = np.array([off_task_rule(r["text"]) is not None for r in rows])
    truth = np.array([r["off_task"] for r in rows])
    return (predicted & truth).sum() / predicted.sum(), (predicted & truth).sum() / truth.sum()


def test_rules_find_meta_talk_with_high_precision_and_recall() -> None:
    assert len(LABELS) >= 200 and 0.4 < np.mean([r["off_task"] for r in LABELS]) < 0.6
    precision, recall = _precision_recall(LABELS)
    print(f"off_task on {len(LABELS)} written texts: precision {precision:.3f}, recall {recall:.3f}")
    assert precision >= 0.95 and recall >= 0.9


def test_rules_on_hand_labelled_model_completions() -> None:
    assert len(REAL) == 166
    precision, recall = _precision_recall(REAL)
    print(f"off_task on {len(REAL)} labelled model completions: precision {precision:.3f}, recall {recall:.3f}")
    assert precision >= 0.95 and recall >= 0.95


def test_every_rule_is_needed() -> None:
    fired = {off_task_rule(r["text"]) for r in LABELS + REAL if r["off_task"]}
    assert set(RULES) <= fired


def test_off_task_metric_weights_agents_not_texts() -> None:
    texts = ["A fisherman mended his net at dawn.", "Sure! Here's a rewritten version:", "Save a coin a day."]
    traits = np.array([0, 1, 1, 1, 2, 2, 0, 0])
    inp = MetricInput(
        traits=traits,
        embeddings=np.eye(3, dtype=np.float32),
        texts=texts,
        machine_ancestry=np.zeros(3),
        machine_authored=np.zeros(3, dtype=bool),
        born=np.zeros(3, dtype=np.int64),
        generation=1,
        initial_centroid=np.ones(3) / 3,
    )
    assert compute_metrics(["off_task"], inp) == {"off_task": 3 / 8}


def test_off_task_summary_per_condition() -> None:
    traits = pl.DataFrame(
        {
            "run_id": ["a", "a", "a", "b", "b"],
            "trait_id": [0, 1, 2, 0, 1],
            "condition": ["x", "x", "x", "y", "y"],
            "author_kind": ["seed", "llm", "llm", "seed", "human_llm_assisted"],
            "text": ["Bread rises.", "The text suggests that bread rises.", "Dough rests.", "Rain falls.", "Rain."],
        }
    )
    population = pl.DataFrame(
        {"run_id": ["a"] * 4 + ["b"] * 2, "generation": [1] * 6, "agent": [0, 1, 2, 3, 0, 1],
         "trait_id": [0, 1, 1, 2, 0, 1]}
    )  # fmt: skip
    summary = off_task_summary(traits, population).to_dicts()
    assert summary == [
        {"condition": "x", "machine_traits": 2, "machine_off_task": 0.5, "held_off_task": 0.5},
        {"condition": "y", "machine_traits": 1, "machine_off_task": 0.0, "held_off_task": 0.0},
    ]
