# BlockSwap reproduction workflow: a table of contents. Stages live in rules/*.smk, in DAG order.
#
# results/<run>/
#   config.yaml                    resolved configuration (schema defaults applied)
#   data/summary.json              dataset splits and normalisation
#   costs/<network>.json           params / MACs / paper ops of every network, with provenance
#   teachers/seed-<s>/             model.pt, metrics.json, history.csv of each teacher
#   search/<budget>/
#     candidates.csv               sampled genotypes within the budget (+ .provenance.json)
#     scores/shard-<i>.csv         Fisher potential of each candidate, one file per parallel shard
#     student.json                 the highest-Fisher genotype, its costs and the rank table
#   students/<network>/seed-<s>/   each student distilled from teacher <s> (AT)
#   ablation/<budget>/             random-<i>.json picked candidates, proxies.csv (Table 1 proxies)
#   tables/                        costs, students, table2 (csv/md/tex), correlation (csv/md)
#   figures/                       pareto, search_<budget>, random_students, fisher_vs_error (png/pdf)
#
# Run everything:   snakemake --cores 8 all
# One stage:        snakemake --cores 8 teacher   (search, students, baselines, ablation, tables, figures, costs)
# Another config:   snakemake --cores 8 all --configfile config/paper-cifar10.yaml


configfile: "config/config.yaml"


report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/costs.smk"
include: "rules/teacher.smk"
include: "rules/search.smk"
include: "rules/students.smk"
include: "rules/ablation.smk"
include: "rules/report.smk"


ABLATION_ON = config["ablation"]["random_students"] > 0
TABLES = [
    f"{RESULTS}/tables/costs.csv",
    f"{RESULTS}/tables/students.csv",
    f"{RESULTS}/tables/table2.md",
] + ([f"{RESULTS}/tables/correlation.md"] if ABLATION_ON else [])
SEARCHED = [] if config["search"]["use_released_genotypes"] else BUDGETS
FIGURES = (
    [f"{RESULTS}/figures/pareto.png"]
    + expand(f"{RESULTS}/figures/search_{{budget}}.png", budget=SEARCHED)
    + ([f"{RESULTS}/figures/random_students.png", f"{RESULTS}/figures/fisher_vs_error.png"] if ABLATION_ON else [])
)


# Per-network results are listed as well as the tables built from them: Snakemake (>= 7.7) does not
# remake a deleted intermediate file whose consumers are up to date, but it always remakes a
# missing input of the target, and then the tables that depend on it.
rule all:
    default_target: True
    input:
        f"{RESULTS}/config.yaml",
        TEACHER_METRICS,
        student_metrics(["blockswap", "moonshine", "reduced", "random"]),
        TABLES,
        FIGURES,


rule teacher:
    input:
        TEACHER_METRICS,


rule search:
    input:
        expand(f"{RESULTS}/search/{{budget}}/student.json", budget=BUDGETS),


rule students:
    input:
        student_metrics(["blockswap"]),


rule baselines:
    input:
        student_metrics(["moonshine", "reduced"]),


rule ablation:
    input:
        student_metrics(["random"]),
        expand(f"{RESULTS}/ablation/{{budget}}/proxies.csv", budget=BUDGETS if ABLATION_ON else []),


rule tables:
    input:
        TABLES,


rule figures:
    input:
        FIGURES,


rule costs:
    input:
        f"{RESULTS}/tables/costs.csv",
