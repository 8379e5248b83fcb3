# BlockSwap reproduction workflow: a table of contents. Stages live in rules/*.smk, in DAG order.
#
# results/<run>/
#   config.yaml              resolved configuration (schema defaults applied)
#   data/summary.json        dataset splits and normalisation
#   costs/<network>.json     params / MACs / paper ops of each network, with provenance
#   tables/costs.{csv,md}    all networks of the run in the paper's units (Table 2/3 P and Ops)
#   search/<budget>/
#     candidates.csv         sampled genotypes within the budget (+ .provenance.json)
#     scores/shard-<i>.csv   Fisher potential of each candidate, one file per parallel shard
#     student.json           the highest-Fisher genotype, its costs and the rank table
#
# Run everything:   snakemake --cores 8 all
# One stage:        snakemake --cores 8 costs   (or search)


configfile: "config/config.yaml"


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/costs.smk"
include: "rules/search.smk"
include: "rules/report.smk"


rule all:
    default_target: True
    input:
        f"{RESULTS}/config.yaml",
        f"{RESULTS}/data/summary.json",
        f"{RESULTS}/tables/costs.csv",
        expand(f"{RESULTS}/search/{{budget}}/student.json", budget=BUDGETS),


rule costs:
    input:
        rules.cost_table.output,


rule search:
    input:
        expand(f"{RESULTS}/search/{{budget}}/student.json", budget=BUDGETS),
