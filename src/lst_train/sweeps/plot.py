"""`lst-train sweep plot`: fit L(C) per family, plot loss and accuracy vs FLOPs, write a markdown summary."""

import os
import statistics
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")  # files only: no display on training machines
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from lst_train.config.sweep import SweepConfig  # noqa: E402
from lst_train.sweeps.fit import PowerLaw, fit_power_law  # noqa: E402


@dataclass
class PlotFiles:
    loss: str
    accuracy: str | None
    """None when no cell has evaluation accuracies."""
    summary: str
    fits: dict[str, PowerLaw | None]


def _families(rows: list[dict]) -> list[str]:
    return list(dict.fromkeys(row["family"] for row in rows))


def fit_points(rows: list[dict], family: str, key: str, how: str) -> tuple[list[float], list[float]]:
    """(FLOPs, value) of a family's finished cells that have the value: 'all' of them (every seed), or the
    'frontier': per budget, the size with the lowest value averaged over its seeds (the minimum over seeds would
    pick the luckiest seed)."""
    chosen = [r for r in rows if r["family"] == family and r["status"] == "done" and r.get(key) is not None]
    if how != "frontier":
        return [r["flops"] for r in chosen], [r[key] for r in chosen]
    seeds: dict[tuple, list[dict]] = {}
    for row in chosen:
        seeds.setdefault((row["size"], row["budget"]), []).append(row)
    best: dict[float, tuple[float, float]] = {}
    for (_, budget), group in seeds.items():
        point = (statistics.fmean(r["flops"] for r in group), statistics.fmean(r[key] for r in group))
        if budget not in best or point[1] < best[budget][1]:
            best[budget] = point
    return [flops for flops, _ in best.values()], [value for _, value in best.values()]


def _loss_plot(rows: list[dict], key: str, fits: dict, path: str) -> None:
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for i, family in enumerate(_families(rows)):
        color = f"C{i}"
        flops, losses = fit_points(rows, family, key, "all")
        ax.scatter(flops, losses, color=color, label=family)
        fit = fits[family]
        if fit is not None:
            grid = np.geomspace(min(flops), max(flops), 100)
            ax.plot(grid, fit(grid), color=color, label=f"{family}: {fit.a:.3g}·C^-{fit.b:.3f} + {fit.c:.3f}")
    if any(r.get(key) is not None for r in rows):
        ax.set(xscale="log")
        ax.legend(fontsize=7)
    else:  # an empty log axis makes matplotlib raise: say what is missing instead
        ax.text(0.5, 0.5, f"no finished cell logged {key}", ha="center", transform=ax.transAxes)
    ax.set(xlabel="training FLOPs", ylabel=key, title=f"{key} vs compute")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _accuracy_plot(rows: list[dict], columns: list[str], path: str) -> None:
    fig, axes = plt.subplots(1, len(columns), figsize=(4.2 * len(columns), 3.8), squeeze=False)
    for ax, column in zip(axes[0], columns):
        for i, family in enumerate(_families(rows)):
            flops, accuracies = fit_points(rows, family, column, "all")
            ax.scatter(flops, accuracies, color=f"C{i}", label=family)
        _, name, setting, _ = column.split("/")
        ax.set(xscale="log", xlabel="training FLOPs", ylabel="accuracy", title=f"{name} {setting.upper()}")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _cell(value) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _summary(sweep: SweepConfig, rows: list[dict], fits: dict, columns: list[str]) -> str:
    lines = [f"# Sweep {sweep.name}", "", f"Control mode: **{sweep.control}**. Fit: `{sweep.fit_loss}` = "
             f"a·C^(−b) + c over the {sweep.fit_points} points of each family (C = training FLOPs).", ""]
    if not any(r.get(sweep.fit_loss) is not None for r in rows):
        lines += [f"No finished cell logged `{sweep.fit_loss}` (the `val_loss*` columns need evaluation.validation "
                  "in the families' recipes): set `fit_loss` to a column the cells log, e.g. `loss_speech`.", ""]
    lines += ["| family | a | b | c | points | mean speech s/s |", "|---|---|---|---|---|---|"]
    for family in _families(rows):
        fit = fits[family]
        throughput = [r["speech_seconds_per_s"] for r in rows if r["family"] == family
                      and r.get("speech_seconds_per_s") is not None]
        mean = _cell(float(np.mean(throughput))) if throughput else "-"
        cells = (f"{fit.a:.4g} | {fit.b:.4g} | {fit.c:.4g} | {fit.points}" if fit else
                 f"- | - | - | {len(fit_points(rows, family, sweep.fit_loss, sweep.fit_points)[0])} (needs 3)")
        lines.append(f"| {family} | {cells} | {mean} |")
    header = ["cell", "status", "steps_done", "flops", "tokens", "global_units", "speech_hours", sweep.fit_loss,
              "speech_seconds_per_s", *columns]
    lines += ["", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(row.get(k)) for k in header) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def plot(sweep: SweepConfig, rows: list[dict]) -> PlotFiles:
    """OUT_DIR/loss_vs_flops.png, accuracy_vs_flops.png (when there are accuracies) and summary.md."""
    out = sweep.out_dir
    fits = {family: fit_power_law(*fit_points(rows, family, sweep.fit_loss, sweep.fit_points))
            for family in _families(rows)}
    files = PlotFiles(os.path.join(out, "loss_vs_flops.png"), None, os.path.join(out, "summary.md"), fits)
    _loss_plot(rows, sweep.fit_loss, fits, files.loss)
    columns = sorted({k for row in rows for k, v in row.items() if k.endswith(f"/{sweep.accuracy}")
                      and v is not None})
    if columns:
        files.accuracy = os.path.join(out, "accuracy_vs_flops.png")
        _accuracy_plot(rows, columns, files.accuracy)
    with open(files.summary, "w") as f:
        f.write(_summary(sweep, rows, fits, columns))
    return files
