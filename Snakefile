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
#     bestof-<n>.json              samples ablation: the highest-Fisher of the first n candidates
#   students/<network>/seed-<s>/   each student distilled from teacher <s> (AT); random students with
#                                  ablation.student_seeds: student seed <s>, the ablation's teacher
#   ablation/<budget>/             random-<i>.json picked candidates, proxies.csv (Table 1 proxies)
#   compare/<budget>/<method>/seed-<s>/  history.csv of a random or evolution search, student.json
#                                  its winner, bestof-<n>.json (random) the best of its first n
#   tables/                        costs, students, table2 or table3 (csv/md/tex), samples,
#                                  correlation, ceiling, convergence, stability, proxy_costs,
#                                  timings, latency_ranks,
#                                  search_curves, search_winners, bestof_seeds (csv/md)
#   figures/                       pareto, search_<budget>, random_students, fisher_vs_error, forest,
#                                  proxy_scatter, learning_curves, pareto_latency (png/pdf)
# benchmarks/<run>/                Snakemake's benchmark file of every job (read by tables/timings)
#   latency/                       table.json (per-block latency, this machine), check.csv (its error),
#                                  networks/<network>/seed-<s>.json (measured, latency.enabled)
#   detection/                     dataset coco (Table 4): search/{candidates.csv,student.json},
#                                  <backbone>/{model.pt,train.json,metrics.json}; tables/table4
#
# Run everything:   snakemake --cores 8 all
# One stage:        snakemake --cores 8 teacher   (search, students, baselines, ablation, tables, figures, costs,
#                                                compare, latency)
# Another config:   snakemake --cores 8 all --configfile config/paper-cifar10.yaml


configfile: "config/config.yaml"


report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/costs.smk"
include: "rules/latency.smk"
include: "rules/teacher.smk"
include: "rules/search.smk"
include: "rules/students.smk"
include: "rules/ablation.smk"
include: "rules/report.smk"
include: "rules/compare.smk"
include: "rules/detection.smk"


rule all:
    default_target: True
    input:
        get_final_output(),


rule teacher:
    input:
        TEACHER_METRICS,


rule search:
    input:
        outputs.search_outputs(config, RESULTS),


rule students:
    input:
        student_metrics(["blockswap"]),


rule baselines:
    input:
        student_metrics(["moonshine", "reduced", "snip"]),


rule ablation:
    input:
        outputs.ablation_outputs(config, PLANS, RESULTS),


rule tables:
    input:
        outputs.paper_tables(config, RESULTS),


rule figures:
    input:
        outputs.paper_figures(config, RESULTS),


rule costs:
    input:
        f"{RESULTS}/tables/costs.csv",


rule compare:
    input:
        outputs.comparison_outputs(config, PLANS, RESULTS),


rule latency:
    input:
        outputs.latency_outputs(config, PLANS, RESULTS, PRETRAINED),
