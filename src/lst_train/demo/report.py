"""The demo's report: demo_out/report.md with the results and accuracy tables, and two PNG plots."""

import os
import statistics

import matplotlib
import yaml

matplotlib.use("Agg")  # files only
import matplotlib.pyplot as plt  # noqa: E402

from lst_train.evaluation.prompts import SETTINGS  # noqa: E402
from lst_train.runs import read_metrics  # noqa: E402

SETTING_TITLES = {"s2s": "S→S", "t2t": "T→T", "s2t": "S→T", "t2s": "T→S"}
LOSSES = (("loss", "all tokens"), ("loss_text", "text tokens"), ("loss_speech", "speech tokens"))


def _number(value, spec: str = ".4g") -> str:
    return "-" if value is None or value == "" else format(value, spec)


def run_label(row: dict) -> str:
    """A run's name in the tables: its family, its size and budget when the sweep has several (see label_rows),
    and its seed when the sweep has several (cells named CELL-sSEED)."""
    seed = int(row.get("seed") or 0)
    name = row["family"] + (f" {row['size']} C{float(row['budget']):.3g}" if row.get("grid") else "")
    return f"{name} s{seed}" if row["cell"].endswith(f"-s{seed}") else name


def label_rows(rows: list[dict]) -> list[dict]:
    """Mark the rows of a sweep with several sizes or budgets, so that every run keeps its own label."""
    grid = len({_point(r)[:2] for r in rows}) > 1
    for row in rows:
        row["grid"] = grid
    return rows


def _point(row: dict) -> tuple[str, float, object]:
    """Runs are compared at the same size, budget and seed."""
    return row.get("size") or "", float(row.get("budget") or 0), row.get("seed")


def _reference_run(rows: list[dict], reference: str, row: dict) -> dict | None:
    """The reference family's run at `row`'s size, budget and seed."""
    return next((x for x in rows if x["family"] == reference and _point(x) == _point(row)), None)


def loss_curves_plot(rows: list[dict], path: str) -> None:
    """Training loss vs FLOPs seen (exact, all ranks) per family: overall, text and speech tokens."""
    fig, axes = plt.subplots(1, len(LOSSES), figsize=(13, 3.8))
    for i, row in enumerate(rows):
        records = [r for r in read_metrics(row["run_dir"]) if r.get("flops_seen")]
        for ax, (key, _) in zip(axes, LOSSES):
            points = [(r["flops_seen"], r[key]) for r in records if r.get(key) is not None]
            if points:
                ax.plot(*zip(*points), "o-", markersize=3, color=f"C{i}", label=run_label(row))
    for ax, (key, title) in zip(axes, LOSSES):
        ax.set(xscale="log", xlabel="training FLOPs", ylabel=key, title=f"training loss, {title}")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def accuracy_plot(accuracies: dict, n_endings: int, path: str) -> None:
    """Accuracy (per-token mean) per setting, one bar per run, with the chance level."""
    families = list(accuracies)
    width = 0.8 / max(len(families), 1)
    fig, ax = plt.subplots(figsize=(7, 3.8))
    for i, family in enumerate(families):
        values = [accuracies[family][s]["accuracy_mean"] or 0.0 for s in SETTINGS]
        ax.bar([k + i * width for k in range(len(SETTINGS))], values, width, color=f"C{i}", label=family)
    ax.axhline(1 / n_endings, color="gray", linestyle="--", label="chance")
    ax.set_xticks([k + width * (len(families) - 1) / 2 for k in range(len(SETTINGS))],
                  [SETTING_TITLES[s] for s in SETTINGS])
    ax.set(ylim=(0, 1), ylabel="accuracy", title=f"story completion, {n_endings}-way")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def results_table(rows: list[dict]) -> list[str]:
    lines = ["| family | params (total / global) | training FLOPs (vs budget) | steps | raw tokens | speech hours "
             "| global units | loss | text loss | speech loss | speech s/s | tokens/s |", "|" + "---|" * 12]
    for r in rows:
        lines.append(
            f"| {run_label(r)} | {r['params_total'] / 1e6:.2f}M / {r['params_global'] / 1e6:.2f}M "
            f"| {_number(r['flops'], '.3e')} ({r['flops'] / r['budget'] - 1:+.1%}) | {r['steps_done']} "
            f"| {_number(r['tokens'], ',.0f')} "
            f"| {_number(r['speech_hours'], '.3f')} | {_number(r['global_units'], ',.0f')} | {_number(r['loss'])} "
            f"| {_number(r['loss_text'])} | {_number(r['loss_speech'])} | {_number(r['speech_seconds_per_s'], '.1f')} "
            f"| {_number(r['tokens_per_s'], ',.0f')} |")
    return lines


def comparison(rows: list[dict], reference: str) -> list[str]:
    """One line per run: what it got for the reference family's compute (its run of the same seed)."""
    lines = []
    for r in rows:
        ref = _reference_run(rows, reference, r)
        if ref is None or r is ref:
            continue
        ratio = {key: r[key] / ref[key] for key in ("flops", "tokens", "speech_hours", "global_units")}
        losses = ", ".join(f"{name} {_number(r[key])} vs {_number(ref[key])}"
                           for key, name in (("loss_text", "text"), ("loss_speech", "speech")))
        lines.append(f"- {run_label(r)}: {ratio['flops']:.2f}x the {reference}'s training FLOPs bought "
                     f"{ratio['tokens']:.2f}x its raw tokens and {ratio['speech_hours']:.2f}x its speech hours, in "
                     f"{ratio['global_units']:.2f}x its global units; final loss {_number(r['loss'])} vs "
                     f"{_number(ref['loss'])} ({losses}).")
    return lines


def token_share_table(rows: list[dict]) -> list[str]:
    """Per family, each data source's realised share of the training tokens (the trainer's last logged record,
    over all ranks) against the share its weight asks for."""
    lines = []
    for r in rows:
        records = [x for x in read_metrics(r["run_dir"]) if x.get("source_token_shares")]
        with open(os.path.join(r["run_dir"], "config.yaml")) as f:
            sources = yaml.safe_load(f)["data"]["sources"]
        if not records:
            continue
        shares = records[-1]["source_token_shares"]
        if not lines:
            lines = ["| family | " + " | ".join(f"{name} (weight)" for name in shares) + " |",
                     "|" + "---|" * (len(shares) + 1)]
        total = sum(s["weight"] for s in sources)
        cells = " | ".join(f"{_number(share, '.3f')} ({s['weight'] / total:.3f})"
                           for share, s in zip(shares.values(), sources))
        lines.append(f"| {run_label(r)} | {cells} |")
    return lines


def accuracy_table(accuracies: dict) -> list[str]:
    head = " | ".join(f"{SETTING_TITLES[s]} mean / sum" for s in SETTINGS)
    lines = [f"| family | {head} |", "|" + "---|" * (len(SETTINGS) + 1)]
    for family, result in accuracies.items():
        cells = " | ".join(f"{_number(result[s]['accuracy_mean'], '.3f')} / {_number(result[s]['accuracy_sum'], '.3f')}"
                           for s in SETTINGS)
        lines.append(f"| {family} | {cells} |")
    items = {s: next(iter(accuracies.values()))[s]["items"] for s in SETTINGS} if accuracies else {}
    lines.append("")
    lines.append("Items per setting: " + ", ".join(f"{SETTING_TITLES[s]} {n}" for s, n in items.items()) + ".")
    return lines


def pair_table(pairs: dict) -> list[str]:
    """Per run: accuracy (per-token mean / sum) on each kind of pair, spoken and written."""
    columns = [(kind, setting) for kind, results in pairs.items() for setting in next(iter(results.values()))
               if setting in SETTING_TITLES]
    head = " | ".join(f"{kind} {SETTING_TITLES[setting]} mean / sum" for kind, setting in columns)
    lines = [f"| family | {head} |", "|" + "---|" * (len(columns) + 1)]
    for family in next(iter(pairs.values())):
        cells = " | ".join(f"{_number(pairs[kind][family][s]['accuracy_mean'], '.3f')} / "
                           f"{_number(pairs[kind][family][s]['accuracy_sum'], '.3f')}" for kind, s in columns)
        lines.append(f"| {family} | {cells} |")
    first = {kind: next(iter(results.values())) for kind, results in pairs.items()}
    lines += ["", "Pairs per column: " + ", ".join(f"{kind} {SETTING_TITLES[s]} {first[kind][s]['items']}"
                                                   for kind, s in columns) + "."]
    return lines


def heldout_table(heldout: dict) -> list[str]:
    """Per run and split: nats per second of speech and per speech token on the speech documents, nats per
    text token on the text documents."""
    splits = list(next(iter(heldout.values()))) if heldout else []
    head = " | ".join(f"{split}: {what}" for split in splits
                      for what in ("nats / speech second", "nats / speech token", "nats / text token"))
    lines = [f"| family | {head} |", "|" + "---|" * (3 * len(splits) + 1)]
    for family, results in heldout.items():
        cells = " | ".join(f"{_number(r['sources'][0]['nats_per_speech_second'])} | "
                           f"{_number(r['sources'][0]['nats_per_speech_token'])} | "
                           f"{_number(r['sources'][1]['nats_per_text_token'])}" for r in results.values())
        lines.append(f"| {family} | {cells} |")
    if heldout:
        first = next(iter(heldout.values()))
        lines += ["", "Documents: " + "; ".join(
            f"{split} {r['sources'][0]['documents']} spoken ({r['sources'][0]['speech_seconds']:.0f} s), "
            f"{r['sources'][1]['documents']} text" for split, r in first.items()) + "."]
    return lines


def _spread(values: list[float]) -> str:
    if len(values) < 2:
        return f"{values[0]:+.4f} (one seed: no spread)" if values else "-"
    mean, std = statistics.fmean(values), statistics.stdev(values)
    return f"{mean:+.4f} ± {std:.4f}"


def verdict(rows: list[dict], heldout: dict, references: dict[str, str], split: str = "test") -> list[str]:
    """Per family (and per size and budget when there are several), its held-out difference to its reference family
    (`references`: family -> the family it is judged against) at the same size, budget and seed, as mean ± std
    over seeds: nats per second of speech and per text token (negative: lower loss than the reference)."""
    lines = []
    order = list(dict.fromkeys(_point(r)[0] for r in rows))  # the sweep's order of sizes
    points = sorted({_point(r)[:2] for r in rows}, key=lambda p: (p[1], order.index(p[0])))
    for family, reference in references.items():
        if family == reference:
            continue
        for size, budget in points:
            speech, text = [], []
            for r in rows:
                if r["family"] != family or _point(r)[:2] != (size, budget):
                    continue
                ref = _reference_run(rows, reference, r)
                if ref is None or run_label(r) not in heldout or run_label(ref) not in heldout:
                    continue
                mine, theirs = heldout[run_label(r)][split]["sources"], heldout[run_label(ref)][split]["sources"]
                speech.append(mine[0]["nats_per_speech_second"] - theirs[0]["nats_per_speech_second"])
                text.append(mine[1]["nats_per_text_token"] - theirs[1]["nats_per_text_token"])
            if not speech:
                continue
            mean = statistics.fmean(speech)
            where = f"{'ahead of' if mean < 0 else 'behind'} the {reference}"
            if len(speech) > 1:
                where += ", beyond" if abs(mean) > 2 * statistics.stdev(speech) else ", within"
                where += " two standard deviations"
            at = f" at {size}, {budget:.3g} FLOPs" if len(points) > 1 else ""
            lines.append(f"- {family} vs {reference}{at}, held-out {split}, {len(speech)} seed(s), equal training "
                         f"FLOPs: speech {_spread(speech)} nats per second of speech ({where}); text {_spread(text)} "
                         "nats per text token.")
    return lines


def frontier(rows: list[dict], heldout: dict, references: dict[str, str]) -> list[str]:
    """With several sizes: per budget, each family at its compute-optimal size, chosen on the valid split (lowest
    held-out speech loss, mean over seeds) and reported on test, against its reference family's own best size."""
    sizes = {_point(r)[0] for r in rows}
    if len(sizes) < 2:
        return []

    def mean_loss(family, size, budget, split, source, key):
        values = [heldout[run_label(r)][split]["sources"][source][key] for r in rows
                  if r["family"] == family and _point(r)[:2] == (size, budget) and run_label(r) in heldout]
        return statistics.fmean(values) if values else None

    lines = ["| budget | family | best size (valid) | test: nats / speech second | test: nats / text token |",
             "|---|---|---|---|---|"]
    best = {}
    for budget in sorted({_point(r)[1] for r in rows}):
        for family in references:
            scored = [(mean_loss(family, size, budget, "valid", 0, "nats_per_speech_second"), size)
                      for size in sizes]
            scored = [(loss, size) for loss, size in scored if loss is not None]
            if not scored:
                continue
            size = min(scored, key=lambda pair: pair[0])[1]
            test = (mean_loss(family, size, budget, "test", 0, "nats_per_speech_second"),
                    mean_loss(family, size, budget, "test", 1, "nats_per_text_token"))
            best[family, budget] = test
            lines.append(f"| {budget:.3g} | {family} | {size} | {_number(test[0])} | {_number(test[1])} |")
    lines.append("")
    for (family, budget), (speech, text) in best.items():
        reference = references[family]
        if family != reference and (reference, budget) in best:
            ref_speech, ref_text = best[reference, budget]
            lines.append(f"- {budget:.3g} FLOPs: {family} at its best size vs {reference} at its own: speech "
                         f"{speech - ref_speech:+.4f} nats per second of speech, text {text - ref_text:+.4f} nats "
                         "per text token.")
    return lines


def write_report(out_dir: str, header: list[str], plan_table: str, rows: list[dict], accuracies: dict,
                 heldout: dict, n_endings: int, reference: str, tensorboard: str, references: dict[str, str],
                 pairs: dict) -> str:
    """report.md + loss_vs_flops.png + accuracy.png in `out_dir`; returns the report's path. `reference`: the family
    the results are compared with; `references`: the family each family's held-out verdict is judged against;
    `pairs`: pair kind -> run name -> evaluate's results."""
    loss_curves_plot(rows, os.path.join(out_dir, "loss_vs_flops.png"))
    best_sizes = frontier(rows, heldout, references)
    accuracy_plot(accuracies, n_endings, os.path.join(out_dir, "accuracy.png"))
    lines = ["# lst_train demo: baseline vs LST at equal training FLOPs", "", *header, "",
             "## Results (final training losses: mean of the last 10% of logged steps)", "", *results_table(rows), "",
             "Training FLOPs are the trainer's exact count (`flops_seen`, summed over ranks after every step); "
             "every run stops at the step nearest its budget (`training.flop_budget`), its LR schedule laid over "
             "the budget's FLOPs, so the families differ in steps, not in compute.", "",
             *comparison(rows, reference), "",
             "## Verdict (held-out test split: the LST family's loss minus the baseline's, per seed)", "",
             *verdict(rows, heldout, references), "",
             "Chosen on the valid split (the same differences there; settings are picked on these, never on test):",
             "", *verdict(rows, heldout, references, "valid"), "",
             *(["## Frontier (each family at its compute-optimal size per budget)", "", *best_sizes, ""]
               if best_sizes else []),
             "## Held-out loss (books no family trained on; the same documents, hence the same target tokens, for "
             "every family)", "", *heldout_table(heldout), "",
             "Per second of speech is the measure to compare; `valid` is for choosing settings, `test` for "
             "reporting (docs/science.md).", "",
             "## Data mix (realised share of the training tokens per source, and the share its weight asks for)", "",
             *token_share_table(rows), "",
             "These are 2M-parameter models on 20 minutes of synthetic speech (times the scale): losses and "
             "throughput show what the framework measures, and accuracies near chance are expected. The published "
             "LST advantage is measured at 1B parameters and beyond (`recipes/sweep_paper.yaml`).", "",
             f"## Story completion ({n_endings}-way, held-out text; accuracy with the per-token mean / the summed "
             "log-likelihood of the ending)", "", *accuracy_table(accuracies), "",
             "## Word and syntax pairs (sWUGGY / sBLIMP-like, 2-way, no context: a held-out word against a nonword "
             "one letter away, a held-out clause against it with two neighbouring words swapped; accuracy with the "
             "per-token mean / the sum)", "", *pair_table(pairs), "",
             "![training loss vs FLOPs](loss_vs_flops.png)", "", "![accuracy per setting](accuracy.png)", "",
             "## Plan (`lst-train sweep plan`)", "", "```", plan_table, "```", "",
             "## TensorBoard", "", f"`{tensorboard}`", ""]
    path = os.path.join(out_dir, "report.md")
    with open(path, "w") as f:
        f.write("\n".join(lines))
    return path
