"""Test-split evaluation: metrics, score histograms for safe and unsafe responses, and their PNG.

The histograms are the BeaverTails / Safe RLHF figure: the distribution of the model's scores over
safe responses and over unsafe ones. A good cost model separates them at 0; a reward model trained on
helpfulness alone typically does not, which is why the cost model exists.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from training.trainers.trainer import pairwise_metrics

HISTOGRAM_BINS = 40
LABELS = {"reward": "reward", "cost": "cost"}


def score_histograms(scores: np.ndarray, signs: np.ndarray, *, bins: int = HISTOGRAM_BINS) -> dict[str, Any]:
    """Counts of safe and unsafe responses' scores over shared bin edges (each response once per pair)."""
    flat_scores = np.asarray(scores, dtype=np.float64).ravel()
    flat_signs = np.asarray(signs, dtype=np.float64).ravel()
    if flat_scores.size == 0:
        return {"bin_edges": [], "safe": [], "unsafe": [], "safe_n": 0, "unsafe_n": 0}
    low, high = float(flat_scores.min()), float(flat_scores.max())
    if high - low < 1e-6:
        low, high = low - 0.5, high + 0.5
    edges = np.linspace(low, high, bins + 1)
    safe = flat_scores[flat_signs < 0]
    unsafe = flat_scores[flat_signs > 0]
    return {
        "bin_edges": [round(float(e), 6) for e in edges],
        "safe": np.histogram(safe, bins=edges)[0].tolist(),
        "unsafe": np.histogram(unsafe, bins=edges)[0].tolist(),
        "safe_n": int(safe.size),
        "unsafe_n": int(unsafe.size),
        "safe_mean": float(safe.mean()) if safe.size else None,
        "unsafe_mean": float(unsafe.mean()) if unsafe.size else None,
    }


def plot_histograms(hist: dict[str, Any], kind: str, path: str | os.PathLike[str], *, title: str = "") -> str:
    """Write the safe/unsafe score histogram as a PNG (matplotlib, headless Agg backend)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    edges = np.asarray(hist["bin_edges"], dtype=np.float64)
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=100)
    try:
        if edges.size >= 2:
            widths = np.diff(edges)
            ax.bar(edges[:-1], hist["safe"], width=widths, align="edge", alpha=0.6, color="#2b8a3e",
                   label=f"safe (n={hist['safe_n']})")  # fmt: skip
            ax.bar(edges[:-1], hist["unsafe"], width=widths, align="edge", alpha=0.6, color="#c92a2a",
                   label=f"unsafe (n={hist['unsafe_n']})")  # fmt: skip
        if kind == "cost":
            ax.axvline(0.0, color="black", linewidth=1, linestyle="--", label="cost = 0")
        ax.set_xlabel(f"{LABELS.get(kind, 'score')}")
        ax.set_ylabel("responses")
        ax.set_title(title or f"{kind} model: scores of safe and unsafe test responses")
        ax.legend(loc="upper right", frameon=False)
        fig.tight_layout()
        fig.savefig(os.fspath(path), format="png")
    finally:
        plt.close(fig)
    return os.fspath(path)


def write_evaluation(
    kind: str, scores: np.ndarray, signs: np.ndarray, out_dir: str | os.PathLike[str]
) -> tuple[dict[str, Any], list[str], str]:
    """Metrics + histograms into out_dir/eval.json and out_dir/score_histogram.png.

    Returns (evaluation dict, image paths, eval JSON path).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    metrics = pairwise_metrics(kind, scores, signs)
    hist = score_histograms(scores, signs)
    image = plot_histograms(hist, kind, out / "score_histogram.png")
    evaluation = {"kind": kind, "metrics": metrics, "histogram": hist}
    eval_path = out / "eval.json"
    eval_path.write_text(json.dumps(evaluation, indent=1), encoding="utf-8")
    return evaluation, [image], str(eval_path)
