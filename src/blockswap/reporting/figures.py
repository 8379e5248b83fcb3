"""The paper's figures from result tables (seaborn, written as PNG and PDF)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from ..errors import BlockswapError  # noqa: E402
from ..provenance import atomic_write, code_version, remove_results  # noqa: E402
from ..search.proxies import FLOOR
from ..search.score_files import selection_column
from ..search.selection import read_scores
from ..stats.intervals import mean_interval  # noqa: E402
from ..training.run_files import check_recorded_file
from ..validation import read_csv_table, read_json_record, require  # noqa: E402
from .correlation import POOLED, ranked
from .report import ERROR_STD_DDOF, TABLE2_ORDER  # noqa: E402
from .search_tables import COMPARED_METHODS, read_histories
from .single_blocktype import reference_network  # noqa: E402

FIGURE_SIZE = (6.0, 4.0)  # inches
DPI = 150


def save(fig, out: Path) -> None:
    """Write `out` (PNG) and the same figure as PDF beside it; the code version goes in the metadata."""
    out = Path(out)
    written = []
    try:
        fig.tight_layout()
        for path in (out.with_suffix(".png"), out.with_suffix(".pdf")):
            atomic_write(
                path,
                lambda tmp, fmt=path.suffix[1:]: fig.savefig(
                    tmp, format=fmt, dpi=DPI, metadata={"Creator": f"blockswap {code_version()}"}
                ),
            )
            written.append(path)
    except BaseException:
        remove_results(written)  # both files or neither
        raise
    finally:
        plt.close(fig)


def pareto(students: pd.DataFrame, out: Path) -> None:
    """Figure 3: test error against parameters, one series per method, mean +- std over seeds
    (random ablation students are left to Figure 2)."""
    students = students[students["method"] != "random"]
    summary = students.groupby(["method", "network"], as_index=False).agg(
        params=("params", "first"),
        error=("test_error", "mean"),
        std=("test_error", lambda e: e.std(ddof=ERROR_STD_DDOF)),
    )
    fig, ax = plt.subplots(figsize=FIGURE_SIZE)
    for (method, group), colour in zip(summary.groupby("method"), sns.color_palette()):
        group = group.sort_values("params")
        ax.errorbar(
            group["params"] / 1e3,
            group["error"],
            yerr=group["std"].fillna(0),
            fmt="o",
            color=colour,
            label=method,
            capsize=2,
            linestyle="-" if method == "blockswap" else "none",
        )
    ax.set_xscale("log")
    ax.set_xlabel("parameters (K)")
    ax.set_ylabel("test error (%)")
    ax.legend()
    save(fig, out)


FIGURE_SCORE_COLUMNS = ["candidate", "params", "fisher"]  # what the search figure plots


def search(scores: Sequence[Path], student: Path, out: Path) -> None:
    """Fisher potential of every sampled candidate against its size, the chosen one marked."""
    frame = pd.concat([read_scores(p, FIGURE_SCORE_COLUMNS)[0] for p in scores], ignore_index=True)
    chosen = read_json_record(student, "selection file")
    fig, ax = plt.subplots(figsize=FIGURE_SIZE)
    sns.scatterplot(data=frame, x=frame["params"] / 1e3, y="fisher", s=12, ax=ax, color="grey", label="candidates")
    params, fisher = (require(chosen, student, key, "number") for key in ("params", "fisher"))
    ax.scatter([params / 1e3], [fisher], marker="*", s=200, color="red", label="selected")
    ax.set_xlabel("parameters (K)")
    ax.set_ylabel("Fisher potential")
    ax.set_title(f"{len(frame)} candidates")
    ax.legend()
    save(fig, out)


def random_students(
    students: pd.DataFrame,
    out: Path,
    kind: str = "params",
    tolerance: float = 0.025,
    pairing: dict[int, str] | None = None,
) -> None:
    """Figure 2: error density of random students per budget, with BlockSwap and the
    single-blocktype network of that size (`single_blocktype.reference_network`) marked."""
    random = students[students["method"] == "random"]
    if random.empty:
        raise BlockswapError("the students table has no random students (set ablation.random_students)")
    budgets = sorted(random["budget"].dropna().unique())
    fig, axes = plt.subplots(
        1, len(budgets), figsize=(FIGURE_SIZE[0] * len(budgets) / 1.5, FIGURE_SIZE[1]), squeeze=False
    )
    for ax, budget in zip(axes[0], budgets):
        errors = random[random["budget"] == budget].groupby("candidate")["test_error"].mean()
        if errors.nunique() > 1:
            sns.kdeplot(errors, ax=ax, fill=True, warn_singular=False)
        sns.rugplot(errors, ax=ax)
        ax.axvline(errors.mean(), color="grey", linestyle=":", label="random mean")
        reference = reference_network(students, int(budget), kind, tolerance, pairing)
        if reference.network is not None:
            error = students.loc[students["network"] == reference.network, "test_error"].mean()
            ax.axvline(error, color="green", label=f"single type ({reference.network})")
        else:  # said on the panel, not left for the reader to infer from a missing line
            ax.text(
                0.02,
                0.02,
                "no single type marked:\n" + reference.note,
                transform=ax.transAxes,
                fontsize="x-small",
                wrap=True,
            )
        ours = students[(students["method"] == "blockswap") & (students["budget"] == budget)]["test_error"]
        if len(ours):
            ax.axvline(ours.mean(), color="red", label="BlockSwap")
        ax.set_title(f"budget {int(budget) / 1e3:g}K")
        ax.set_xlabel("test error (%)")
        ax.legend(fontsize="small")
    save(fig, out)


def fisher_vs_error(correlations: pd.DataFrame, students: pd.DataFrame, proxies: dict, out: Path) -> None:
    """Fisher potential at initialisation against final error of the random students, rho/tau shown."""
    fig, axes = plt.subplots(
        1, max(1, len(proxies)), figsize=(FIGURE_SIZE[0] * max(1, len(proxies)) / 1.5, FIGURE_SIZE[1]), squeeze=False
    )
    random = students[students["method"] == "random"]
    missing = [c for c in ("spearman", "kendall") if c not in correlations]
    if missing:
        raise BlockswapError(f"the correlation table has no {missing[0]} column (blockswap report correlation --csv)")
    for ax, (budget, path) in zip(axes[0], sorted(proxies.items())):
        scores = read_scores(path, FIGURE_SCORE_COLUMNS)[0].set_index("candidate")
        errors = random[random["budget"] == int(budget)].groupby("candidate")["test_error"].mean()
        joined = scores.join(errors, how="inner")
        sns.scatterplot(x=joined["fisher"], y=joined["test_error"], ax=ax)
        # The statistics are the table's, never recomputed here: figure and table cannot disagree.
        # Budgets are compared as text: a table with a pooled row reads its budget column as text.
        row = correlations[
            (correlations["budget"].astype(str) == str(int(budget)))
            & (correlations["proxy"] == "fisher")
            & (correlations["minibatches"] == 1)
        ]
        if row.empty:
            raise BlockswapError(
                f"the correlation table has no Fisher row (k = 1) for budget {budget}: it was "
                "built from other proxies files than the figure's"
            )
        ax.set_title(f"{int(budget) / 1e3:g}K: rho {row['spearman'].iloc[0]:.2f}, tau {row['kendall'].iloc[0]:.2f}")
        ax.set_xlabel("Fisher potential at initialisation")
        ax.set_ylabel("test error (%)")
    save(fig, out)


CONTROL_PROXIES = ("params", "macs", "random")  # drawn grey in the shoot-out figures
SEED_ROW = "seed vs seed (error)"  # the forest's row of the seed-to-seed Kendall tau of error
SEED_LABEL = "seed-to-seed tau of error"
CEILING_LABEL = "attainable: |tau| <= seed-mean ceiling"
CEILING_COLUMNS = ("ceiling_tau", "seed_tau", "seed_tau_low", "seed_tau_high")


def _draw_ceiling(ax, rows: pd.DataFrame, y: float) -> None:
    """The budget's noise ceiling (the same on each of its rows; absent from older tables): what any
    predictor can reach with the seed-mean error shaded, |tau| <= ceiling, and the seed-to-seed tau
    of error with its interval on a row of its own."""
    found = {c: rows[c].dropna() if c in rows else pd.Series(dtype=float) for c in CEILING_COLUMNS}
    ceiling, tau, low, high = (float(v.iloc[0]) if len(v) else np.nan for v in found.values())
    if np.isfinite(ceiling):
        edge = {"edgecolor": "green", "linestyle": "--", "linewidth": 0.8, "label": CEILING_LABEL}
        ax.axvspan(-ceiling, ceiling, facecolor=(0, 0.5, 0, 0.12), **edge)
    if np.isfinite(tau):
        xerr = [[max(tau - low, 0)], [max(high - tau, 0)]] if np.isfinite(low) else None
        ax.errorbar([tau], [y], xerr=xerr, fmt="D", color="C3", markersize=4, capsize=2, label=SEED_LABEL)


def forest(correlations: pd.DataFrame, out: Path) -> None:
    """The proxy shoot-out: each proxy's quality (sign-corrected Kendall tau with error) with its 95 %
    interval, a panel per budget (pooled last), the params interval shaded and, with several seeds
    per random student, the noise ceiling and the seed-to-seed tau: what is attainable beside it."""
    budgets = list(dict.fromkeys(correlations["budget"].astype(str)))
    labelled = correlations.assign(
        label=[p if k <= 1 else f"{p}@{k}" for p, k in zip(correlations["proxy"], correlations["minibatches"])]
    )
    # One order for every panel: by pooled (or the only budget's) quality, best at the top.
    reference = labelled[labelled["budget"].astype(str) == budgets[-1]].sort_values("quality", na_position="first")
    order = list(reference["label"])
    seeds = "seed_tau" in correlations and correlations["seed_tau"].notna().any()
    ticks = order + ([SEED_ROW] if seeds else [])
    size = (3.2 * len(budgets) + 2.4, 0.28 * len(ticks) + 1.6)  # the legend beside the last panel
    fig, axes = plt.subplots(1, len(budgets), figsize=size, sharey=True, squeeze=False)
    for ax, budget in zip(axes[0], budgets):
        rows = labelled[labelled["budget"].astype(str) == budget].set_index("label").reindex(order)
        control = rows["proxy"].isin(CONTROL_PROXIES).to_numpy()
        low = (rows["quality"] - rows["quality_low"]).clip(lower=0).fillna(0).to_numpy()
        high = (rows["quality_high"] - rows["quality"]).clip(lower=0).fillna(0).to_numpy()
        quality, y = rows["quality"].to_numpy(), np.arange(len(order))
        for group, colour in ((~control, "C0"), (control, "grey")):  # proxies, then the controls in grey
            bars = {"xerr": [low[group], high[group]], "fmt": "o", "color": colour, "markersize": 3.5, "capsize": 2}
            ax.errorbar(quality[group], y[group], **bars)
        if "params" in rows.index and pd.notna(rows.loc["params", "quality_low"]):
            span = rows.loc["params", ["quality_low", "quality_high"]].astype(float)
            ax.axvspan(*span, color="orange", alpha=0.15, label="params interval")
        _draw_ceiling(ax, rows, len(order))
        ax.axvline(0, color="black", linewidth=0.6)
        n = rows["n"].dropna()
        title = "pooled" if budget == "pooled" else f"{int(budget) / 1e3:g}K"
        ax.set_title(f"{title} (n = {int(n.iloc[0]) if len(n) else 0})")
        ax.set_xlim(-1, 1)
    fig.supxlabel(
        "quality: Kendall tau between the proxy's predicted order and accuracy (95 % bootstrap interval)",
        fontsize="small",
    )
    axes[0][0].set_yticks(range(len(ticks)), ticks)
    # Every panel's labelled artists once (a ceiling may be drawn in some panels only).
    legend = {label: h for ax in axes[0] for h, label in zip(*ax.get_legend_handles_labels())}
    if legend:  # beside the last panel, where it hides no interval
        axes[0][-1].legend(legend.values(), legend.keys(), fontsize="small", loc="upper left", bbox_to_anchor=(1.02, 1))
    save(fig, out)


def proxy_scatter(correlations: pd.DataFrame, students: pd.DataFrame, proxies: dict, out: Path, best: int = 3) -> None:
    """Score against trained error of the random students for the `best` proxies (pooled quality at
    k = 1, controls excluded), one row per proxy, one column per budget."""
    budgets = sorted(proxies, key=int)
    pooled = POOLED if (correlations["budget"].astype(str) == POOLED).any() else budgets[0]
    names = ranked(correlations, pooled, 1, set(CONTROL_PROXIES))[:best]
    if not names:
        raise BlockswapError("the correlation table has no proxy at k = 1 besides the controls")
    random = students[students["method"] == "random"]
    fig, axes = plt.subplots(len(names), len(budgets), figsize=(3.2 * len(budgets), 2.8 * len(names)), squeeze=False)
    for j, budget in enumerate(budgets):
        scores = read_scores(proxies[budget], ["candidate"])[0].set_index("candidate")
        errors = random[random["budget"] == int(budget)].groupby("candidate")["test_error"].mean()
        joined = scores.join(errors, how="inner")
        for i, name in enumerate(names):
            column = selection_column(name)
            ax = axes[i][j]
            # A degenerate network's log-valued score is stored as the floor value (proxies.FLOOR):
            # it ranks last in the statistics but has no place on an axis.
            shown = joined[joined[column] > FLOOR]
            ax.scatter(shown[column], shown["test_error"], s=12)
            row = correlations[
                (correlations["budget"].astype(str) == budget)
                & (correlations["proxy"] == name)
                & (correlations["minibatches"] == 1)
            ].iloc[0]
            ax.set_title(
                f"{int(budget) / 1e3:g}K, n = {int(row['n'])}: quality {row['quality']:+.2f} "
                f"[{row['quality_low']:+.2f}, {row['quality_high']:+.2f}]",
                fontsize="small",
            )
            ax.set_xlabel(name)
            ax.set_ylabel("test error (%)")
    save(fig, out)


def search_curves(histories: Sequence[Path], out: Path) -> None:
    """Guided search: the best proxy value found against the number of evaluations, per
    budget, random search and evolution, mean over search seeds with the 95 % interval shaded."""
    found = read_histories(histories)
    budgets = sorted({b for b, _ in found["curves"]})
    fig, axes = plt.subplots(
        1, len(budgets), figsize=(FIGURE_SIZE[0] * max(1, len(budgets)) * 0.7, FIGURE_SIZE[1]), squeeze=False
    )
    for ax, budget in zip(axes[0], budgets):
        for method, colour in zip(COMPARED_METHODS, sns.color_palette()):
            seeds = found["curves"].get((budget, method))
            if not seeds:
                continue
            curves = np.array(list(seeds.values()))
            stats = np.array([mean_interval(curves[:, i])[:3] for i in range(curves.shape[1])])
            x = np.arange(1, curves.shape[1] + 1)
            ax.plot(x, stats[:, 0], color=colour, label=f"{method} (n={len(seeds)})")
            ax.fill_between(x, stats[:, 1], stats[:, 2], color=colour, alpha=0.25, linewidth=0)
        ax.set_xscale("log")
        ax.set_xlabel("proxy evaluations")
        ax.set_ylabel(f"best {found['proxy'][budget]} so far")
        ax.set_title(f"budget {budget}")
        ax.legend()
    save(fig, out)


def pareto_latency(students: pd.DataFrame, out: Path) -> None:
    """Error against parameters beside error against measured latency, one series per
    method, mean over seeds: which networks are small is not always which are fast."""
    column = "latency_ms"
    if column not in students or students[column].isna().all():
        raise BlockswapError(
            "the students table has no measured latencies (latency_ms): build it with "
            "`blockswap report students ... --latency FILES` (workflow: latency.enabled)"
        )
    students = students[(students["method"] != "random") & students[column].notna()]
    summary = students.groupby(["method", "network"], as_index=False).agg(
        params=("params", "first"), latency=(column, "mean"), error=("test_error", "mean")
    )
    fig, axes = plt.subplots(1, 2, figsize=(FIGURE_SIZE[0] * 2, FIGURE_SIZE[1]), sharey=True)
    for (method, group), colour in zip(summary.groupby("method"), sns.color_palette()):
        for ax, x, scale in ((axes[0], "params", 1e3), (axes[1], "latency", 1)):
            group = group.sort_values(x)
            ax.plot(
                group[x] / scale,
                group["error"],
                "o",
                color=colour,
                label=method,
                linestyle="-" if method == "blockswap" else "none",
            )
    axes[0].set_xscale("log")
    axes[0].set_xlabel("parameters (K)")
    axes[1].set_xlabel("measured latency (ms)")
    axes[0].set_ylabel("test error (%)")
    axes[1].legend()
    save(fig, out)


# --- learning curves of every trained network ---------------------------------------------------

HISTORY_KINDS = {
    "epoch": "int",
    "train_loss": "number",
    "train_error": "error",
    "val_error": "error?",
    "lr": "number?",
    "seconds": "number?",
}
# Panels of the learning-curves figure: history column -> axis label; val_error only where a
# network held out a validation split.
CURVES = {"train_loss": "training loss", "train_error": "training error (%)", "val_error": "validation error (%)"}
LEGEND_MAX = 8  # networks named in a method's legend; more are counted instead


def read_learning_curves(histories: Sequence[Path]) -> pd.DataFrame:
    """Every epoch of every `history.csv` (blockswap train), with the method, network and seed
    of the run from the metrics.json the same training wrote beside it."""
    frames = []
    for path in histories:
        path = Path(path)
        frame = read_csv_table(path, "training history", HISTORY_KINDS, ["epoch", "train_loss", "train_error"])[0]
        check_recorded_file(path, "history_sha256")
        metrics = read_json_record(path.parent / "metrics.json", "training metrics file")
        tags = metrics.get("tags") if isinstance(metrics.get("tags"), dict) else {}
        method = tags.get("method", "teacher" if metrics.get("teacher") is None else "student")
        network = tags.get("network", path.parent.parent.name)
        frames.append(
            frame.assign(
                method=method,
                network=network,
                seed=require(metrics, path.parent / "metrics.json", "seed", "int"),
                run=str(path),
            )
        )
    if not frames:
        raise BlockswapError("learning curves need at least one history.csv")
    return pd.concat(frames, ignore_index=True)


def learning_curves(histories: Sequence[Path], out: Path) -> None:
    """Training loss and error (and validation error where there is one) of every trained network
    by epoch: one row of panels per method (the paper's order), one colour per network, a line
    per seed."""
    curves = read_learning_curves(histories)
    columns = [c for c in CURVES if c in curves and curves[c].notna().any()]
    methods = sorted(curves["method"].unique(), key=lambda m: (TABLE2_ORDER.get(m, len(TABLE2_ORDER)), m))
    fig, axes = plt.subplots(
        len(methods), len(columns), figsize=(3.4 * len(columns), 2.4 * len(methods) + 0.4), squeeze=False
    )
    for i, method in enumerate(methods):
        rows = curves[curves["method"] == method]
        networks = list(dict.fromkeys(rows["network"]))
        colours = dict(zip(networks, sns.color_palette("husl" if len(networks) > 10 else None, len(networks))))
        for j, column in enumerate(columns):
            ax = axes[i][j]
            for (network, _), run in rows.groupby(["network", "run"], sort=False):
                label = network if run["seed"].iloc[0] == rows.loc[rows["network"] == network, "seed"].min() else None
                ax.plot(run["epoch"], run[column], color=colours[network], linewidth=1, alpha=0.8, label=label)
            ax.set_title(f"{method}: {CURVES[column]}", fontsize="small")
            ax.set_xlabel("epoch")
            ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))  # epochs are whole
        if len(networks) <= LEGEND_MAX:
            axes[i][-1].legend(fontsize="x-small")
        else:
            axes[i][-1].text(
                0.98,
                0.95,
                f"{len(networks)} networks",
                transform=axes[i][-1].transAxes,
                ha="right",
                va="top",
                fontsize="small",
            )
    save(fig, out)
