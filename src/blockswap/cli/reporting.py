"""`blockswap report`, `figure` and `reseal`: the paper's tables and figures from result files, and
accepting a deliberate edit of a result file."""

from __future__ import annotations

import time
from pathlib import Path

from ..errors import BlockswapError
from ..provenance import input_record, provenance, reseal, seal_all, write_results
from ..reporting.convergence import DEFAULT_PLATEAU, convergence_display, convergence_table
from ..reporting.latency_ranks import latency_ranks, latency_ranks_display
from ..reporting.noise import ceiling_display, ceiling_table
from ..reporting.proxy_tables import (
    correlation_display,
    correlation_table,
    proxy_costs,
    read_correlation,
    stability_table,
)
from ..reporting.report import (
    cost_table,
    latex,
    markdown,
    samples_table,
    significant,
    table2,
    table2_display,
    table3,
    table4,
)
from ..reporting.search_tables import bestof_seeds, search_curves, search_winners
from ..reporting.single_blocktype import parse_pairing
from ..reporting.students import read_students, students_table
from ..reporting.timings import timings_display, timings_table


def report_costs(args):
    table = cost_table(args.inputs)
    return table, table


def report_students(args):
    table = students_table(args.inputs, args.latency or (), args.data)
    return table, table


def report_table2(args):
    table = table2(read_students(args.inputs), args.note or ())
    return table, table2_display(table)


def report_table3(args):
    table = table3(read_students(args.inputs), args.note or ())
    return table, table.drop(columns=["genotype"], errors="ignore")


def report_table4(args):
    return table4(args.inputs)


def report_latency_ranks(args):
    frame = latency_ranks(read_students(args.inputs))
    return frame, latency_ranks_display(frame)


def report_samples(args):
    table = samples_table(
        read_students(args.inputs),
        args.note or (),
        args.budget_kind,
        args.tolerance,
        parse_pairing(args.single_blocktype),
    )
    return table, table2_display(table)


def report_correlation(args):
    files = parse_pairs(args.proxies, "--proxies")
    table = correlation_table(read_students(args.inputs), files)
    return table, correlation_display(table)


def report_ceiling(args):
    table = ceiling_table(read_students(args.inputs))
    return table, ceiling_display(table)


def report_convergence(args):
    table = convergence_table(read_students(args.inputs), args.plateau)
    return table, convergence_display(table)


def report_stability(args):
    scorings = {}
    for budget, path in parse_pairs(args.proxies, "--proxies", many=True):
        scorings.setdefault(budget, []).append(path)
    if not scorings:
        raise BlockswapError("report stability needs --proxies BUDGET=PATH, twice or more per budget")
    table = stability_table(scorings)
    return table, table.round(3)


def report_proxy_costs(args):
    table = proxy_costs(args.inputs)
    return table, table.round(4)


def report_search_curves(args):
    table = search_curves(args.inputs)
    return table, significant(table)


def report_search_winners(args):
    table = search_winners(read_students(args.inputs))
    return table, significant(table)


def report_bestof_seeds(args):
    table = bestof_seeds(read_students(args.inputs))
    return table, significant(table)


def report_timings(args):
    if len(args.inputs) != 1:
        raise BlockswapError("report timings takes one folder: the run's benchmarks (e.g. benchmarks/<run>)")
    table, files = timings_table(args.inputs[0], parse_rules(args.rule))
    args.read = files  # the provenance names the benchmark files, not their folder
    return table, timings_display(table)


def parse_rules(items) -> dict:
    """RULE=PATTERN arguments of report timings, in the order given (the first match wins)."""
    rules = {}
    for item in items or []:
        name, sep, pattern = item.partition("=")
        if not sep or not name.isidentifier() or not pattern:
            raise BlockswapError(f"--rule needs RULE=PATTERN (a Snakemake benchmark pattern), got {item!r}")
        if name in rules:
            raise BlockswapError(f"--rule names rule {name} twice")
        rules[name] = pattern
    return rules


# Report kind -> builder returning (full table for CSV, display table for Markdown/LaTeX).
REPORT_BUILDERS = {
    "costs": report_costs,
    "students": report_students,
    "table2": report_table2,
    "table3": report_table3,
    "table4": report_table4,  # detection metrics JSONs (blockswap detection evaluate)
    "samples": report_samples,
    "correlation": report_correlation,
    "ceiling": report_ceiling,  # students CSVs: seed-to-seed noise ceiling and power of the shoot-out
    "convergence": report_convergence,  # students CSVs: whether each method's runs plateaued
    "stability": report_stability,
    "proxy_costs": report_proxy_costs,
    "search_curves": report_search_curves,  # guided search: search histories
    "search_winners": report_search_winners,  # students CSVs of the comparison
    "bestof_seeds": report_bestof_seeds,
    "timings": report_timings,  # a benchmarks folder: where the run's time went
    "latency_ranks": report_latency_ranks,  # students CSVs with measured latency
}


def derived_inputs(args) -> list[str]:
    """Every file a table or figure is computed from: the positional inputs, any --proxies files,
    (search figure) the selection JSON, (students) the data summary, and what a builder noted it
    read besides (`args.read`: it replaces the positional inputs, e.g. a folder's files)."""
    student = [args.student] if getattr(args, "student", None) else []
    extra = [path for _, path in parse_pairs(args.proxies, "--proxies", many=True)]
    correlation = [args.correlation] if getattr(args, "correlation", None) else []
    latency = list(getattr(args, "latency", None) or [])
    data = [args.data] if getattr(args, "data", None) else []
    inputs = getattr(args, "read", None)
    inputs = list(args.inputs) if inputs is None else list(inputs)
    return list(dict.fromkeys(inputs + extra + student + correlation + latency + data))  # each file once


def derived_record(args, outputs, start: float, **extra) -> dict:
    return {
        "kind": args.kind,
        "outputs": [str(p) for p in outputs],
        **extra,
        **input_record(derived_inputs(args)),
        "provenance": provenance(seconds=time.perf_counter() - start),
    }


def cmd_report(args) -> None:
    start = time.perf_counter()
    table, display = REPORT_BUILDERS[args.kind](args)
    texts = {args.csv: table.to_csv(index=False)}
    if args.md:
        texts[args.md] = markdown(display)
    if args.tex:
        texts[args.tex] = latex(display)
    record = derived_record(args, list(texts), start, rows=len(table))
    write_results(texts, record)
    print(f"wrote {len(table)} rows to {args.csv}")


def add_reference_options(p) -> None:
    """Which single-blocktype network the samples table and Figure 2 mark beside a budget."""
    p.add_argument(
        "--budget-kind",
        default="params",
        choices=["params", "macs", "latency"],
        help="samples, random_students: what a budget counts (default params)",
    )
    p.add_argument(
        "--tolerance",
        type=float,
        default=0.025,
        help="samples, random_students: mark the single-blocktype network closest to a budget only if it "
        "lies strictly within +-this fraction of it (default 0.025, the search's)",
    )
    p.add_argument(
        "--single-blocktype",
        action="append",
        metavar="BUDGET=BLOCK",
        help="samples, random_students: mark all-BLOCK beside BUDGET whatever its size (repeat)",
    )


def add_report(sub) -> None:
    p = sub.add_parser(
        "report",
        help="assemble a table from result files",
        description="Assemble a table: "
        "costs (cost JSONs), students (metrics.json files), table2 / table3 / samples (students "
        "CSVs), correlation (students CSVs and --proxies), ceiling (students CSVs: the random students' "
        "seed-to-seed noise ceiling and power), convergence (students CSVs, with --plateau), "
        "stability (--proxies, several scorings per budget), "
        "proxy_costs (scores CSVs), timings (a folder of Snakemake benchmark TSVs, with --rule), "
        "table4 (detection metrics JSONs), latency_ranks (students CSVs with measured latency).",
    )
    p.add_argument("kind", choices=sorted(REPORT_BUILDERS), help="which table")
    p.add_argument("inputs", nargs="+", help="input files")
    p.add_argument(
        "--proxies",
        action="append",
        metavar="BUDGET=PATH",
        help="correlation: proxy scores per budget; stability: "
        "the scores of one budget under each scoring seed (repeat)",
    )
    p.add_argument("--note", action="append", help="table2/table3/samples: a note row (e.g. from the plan)")
    p.add_argument(
        "--latency",
        action="append",
        metavar="PATH",
        help="students: measured latency files ('blockswap measure --out') filling the latency_ms column",
    )
    p.add_argument(
        "--data",
        metavar="PATH",
        help="students: the data summary ('blockswap data --out'), whose training split gives the images_per_s column",
    )
    p.add_argument(
        "--rule",
        action="append",
        metavar="RULE=PATTERN",
        help="timings: a rule's benchmark pattern "
        "(Snakemake's {wildcard} syntax); its files are counted under RULE (repeat; first match wins)",
    )
    p.add_argument(
        "--plateau",
        type=float,
        default=DEFAULT_PLATEAU,
        metavar="POINTS",
        help="convergence: a run plateaued when its validation error changed by at most this many "
        f"points over the last 20 %% of epochs (default {DEFAULT_PLATEAU:.1f})",
    )
    add_reference_options(p)
    p.add_argument("--csv", required=True, help="output CSV")
    p.add_argument("--md", help="also write a Markdown table here")
    p.add_argument("--tex", help="also write a LaTeX table here")


def parse_pairs(items, what: str, many: bool = False):
    """BUDGET=PATH arguments: a dict (one path per budget), or with `many` a list of pairs."""
    pairs = []
    for item in items or []:
        key, sep, path = item.partition("=")
        if not sep or not key.isdigit() or not path:
            raise BlockswapError(f"{what} needs BUDGET=PATH, got {item!r}")
        pairs.append((key, path))
    if many:
        return pairs
    twice = [key for key, _ in pairs if [k for k, _ in pairs].count(key) > 1]
    if twice:
        raise BlockswapError(f"{what} names budget {twice[0]} twice; give one file per budget")
    return dict(pairs)


def figure_search(args, figures) -> None:
    if not args.student:
        raise BlockswapError("figure search needs --student (the selection JSON)")
    figures.search([Path(p) for p in args.inputs], Path(args.student), Path(args.out))


def figure_fisher_vs_error(args, figures) -> None:
    # The rho and tau shown are the correlation table's (the correlation rule's), not recomputed.
    if not args.correlation:
        raise BlockswapError("figure fisher_vs_error needs --correlation (blockswap report correlation --csv)")
    figures.fisher_vs_error(
        read_correlation(args.correlation),
        read_students(args.inputs),
        parse_pairs(args.proxies, "--proxies"),
        Path(args.out),
    )


def figure_learning_curves(args, figures) -> None:
    histories = [Path(p) for p in args.inputs]
    # The method and network of each curve come from the metrics.json beside its history.
    args.read = [p for h in histories for p in (h, h.parent / "metrics.json")]
    figures.learning_curves(histories, Path(args.out))


def figure_forest(args, figures) -> None:
    if len(args.inputs) != 1:
        raise BlockswapError("figure forest takes one correlation table (blockswap report correlation --csv)")
    figures.forest(read_correlation(args.inputs[0]), Path(args.out))


def figure_proxy_scatter(args, figures) -> None:
    if not args.correlation:
        raise BlockswapError("figure proxy_scatter needs --correlation (blockswap report correlation --csv)")
    figures.proxy_scatter(
        read_correlation(args.correlation),
        read_students(args.inputs),
        parse_pairs(args.proxies, "--proxies"),
        Path(args.out),
    )


# Figure kind -> drawer (args, the figures module, imported lazily: matplotlib is slow to load).
FIGURE_BUILDERS = {
    "pareto": lambda args, figures: figures.pareto(read_students(args.inputs), Path(args.out)),
    "search": figure_search,
    "random_students": lambda args, figures: figures.random_students(
        read_students(args.inputs),
        Path(args.out),
        args.budget_kind,
        args.tolerance,
        parse_pairing(args.single_blocktype),
    ),
    "fisher_vs_error": figure_fisher_vs_error,
    "forest": figure_forest,
    "proxy_scatter": figure_proxy_scatter,
    "search_curves": lambda args, figures: figures.search_curves([Path(p) for p in args.inputs], Path(args.out)),
    "pareto_latency": lambda args, figures: figures.pareto_latency(read_students(args.inputs), Path(args.out)),
    "learning_curves": figure_learning_curves,
}


def cmd_figure(args) -> None:
    from ..reporting import figures  # matplotlib and seaborn are slow to import: only for figures

    start = time.perf_counter()
    FIGURE_BUILDERS[args.kind](args, figures)
    png = Path(args.out).with_suffix(".png")
    outputs = [png, png.with_suffix(".pdf")]
    record = derived_record(args, outputs, start)
    seal_all(outputs, record)
    print(f"wrote {Path(args.out).with_suffix('.png')} and .pdf")


def add_figure(sub) -> None:
    p = sub.add_parser(
        "figure",
        help="draw one of the paper's figures",
        description="Draw a figure (PNG and PDF): "
        "pareto / random_students from students CSVs, search from score CSVs, forest from a "
        "correlation CSV, fisher_vs_error and proxy_scatter from students CSVs with --correlation and "
        "--proxies, learning_curves from history.csv files (each with its metrics.json beside it).",
    )
    p.add_argument("kind", choices=list(FIGURE_BUILDERS), help="which figure")
    p.add_argument("inputs", nargs="+", help="students CSVs (search: score CSVs; learning_curves: history.csv files)")
    p.add_argument("--student", help="search: the selection JSON of the budget")
    p.add_argument(
        "--proxies", action="append", metavar="BUDGET=PATH", help="fisher_vs_error, proxy_scatter: proxy scores"
    )
    p.add_argument("--correlation", help="fisher_vs_error, proxy_scatter: the correlation table")
    add_reference_options(p)
    p.add_argument("--out", required=True, help="output PNG (a PDF is written beside it)")


def cmd_reseal(args) -> None:
    for path in args.files:
        record = reseal(path)
        if record is None:
            print(f"{path} is as it was written; nothing to reseal")
        else:
            print(f"resealed {path} (sha256 {record['sha256'][:12]}, edited_by_hand)")


def add_reseal(sub) -> None:
    p = sub.add_parser(
        "reseal",
        help="accept a deliberate edit of a result file",
        description="Record the present sha256 of edited result files in their provenance sidecars, marked "
        "edited_by_hand with the time, so readers accept them (a file changed without this is refused).",
    )
    p.add_argument("files", nargs="+", help="result files edited on purpose (not their .provenance.json)")


COMMANDS = {
    "report": (add_report, cmd_report),
    "figure": (add_figure, cmd_figure),
    "reseal": (add_reseal, cmd_reseal),
}
