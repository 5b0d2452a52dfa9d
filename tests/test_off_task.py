"""The off-task rules against a labelled set the project wrote, and the off_task metric and summary."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl

from culturesim.metrics import MetricInput, compute_metrics
from culturesim.off_task import RULES, off_task_rule
from culturesim.report import off_task_summary

LABELS = [json.loads(line) for line in (Path(__file__).parent / "data" / "off_task_labels.jsonl").open()]


def test_rules_find_meta_talk_with_high_precision_and_recall() -> None:
    assert len(LABELS) >= 200 and 0.4 < np.mean([r["off_task"] for r in LABELS]) < 0.6
    predicted = np.array([off_task_rule(r["text"]) is not None for r in LABELS])
    truth = np.array([r["off_task"] for r in LABELS])
    precision = (predicted & truth).sum() / predicted.sum()
    recall = (predicted & truth).sum() / truth.sum()
    print(f"off_task on {len(LABELS)} labelled texts: precision {precision:.3f}, recall {recall:.3f}")
    assert precision >= 0.95 and recall >= 0.9


def test_every_rule_is_needed() -> None:
    fired = {off_task_rule(r["text"]) for r in LABELS if r["off_task"]}
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
