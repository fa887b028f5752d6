"""Training curves of recovery: loss and perplexity per optimizer step, as CSV and a plot. The paper compares SGR
and external data by these curves (SGR starts lower: the base model's own answers are easy for its pruned self)."""

import math
from pathlib import Path

import pandas as pd

from prunelab.artifacts import TRAINING_CURVE
from prunelab.atomic import write_text
from prunelab.report.plots import _figure, _save


def curve(log_history: list[dict]) -> pd.DataFrame:
    """step, loss, perplexity, learning_rate, epoch: one row per logged training step (Trainer's log_history)."""
    rows = [{"step": int(e["step"]), "loss": float(e["loss"]), "perplexity": math.exp(min(float(e["loss"]), 50.0)),
             "learning_rate": float(e.get("learning_rate", float("nan"))), "epoch": float(e.get("epoch", 0.0))}
            for e in log_history if "loss" in e and "step" in e]
    return pd.DataFrame(rows, columns=["step", "loss", "perplexity", "learning_rate", "epoch"])


def write_curve(log_history: list[dict], out_dir: Path, label: str) -> dict[str, Path]:
    table = curve(log_history)
    csv = write_text(Path(out_dir) / TRAINING_CURVE, table.to_csv(index=False))
    png = Path(out_dir) / "training_curve.png"
    plot_curves({label: table}, png)
    return {"training_csv": csv, "training_plot": png}


def plot_curves(curves: dict[str, pd.DataFrame], path: Path) -> Path:
    """Perplexity per step of one or more runs (e.g. SGR against external data), on a log scale."""
    plt = _figure()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for label, table in curves.items():
        ax.plot(table["step"], table["perplexity"], marker="." if len(table) < 40 else None, label=label)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training perplexity")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    _save(fig, plt, path)
    return path
