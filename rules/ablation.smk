# Ablation stage (Table 1, Figure 2): the first K sampled candidates of each budget are random
# networks in the budget; they are trained as students and their proxies measured after k minibatches.


# One job per budget writes every picked candidate's genotype file (a job each cost more in start-up
# than in work). snakemake --cores 1 results/default/ablation/60000/random-0.json
rule pick_random:
    input:
        rules.sample.output[0],
    output:
        [f"{RESULTS}/ablation/{{budget}}/random-{i}.json" for i in RANDOM_PICKS],
    log:
        f"{LOGS}/ablation/{{budget}}/pick.log",
    benchmark:
        f"{BENCHMARKS}/ablation/{{budget}}/pick.tsv"
    conda:
        "../environment.yml"
    params:
        indices=" ".join(str(i) for i in RANDOM_PICKS),
    shell:
        "blockswap pick {input} --candidate {params.indices} --out {output} > {log} 2>&1"


# snakemake --cores 1 results/default/ablation/60000/proxies.csv
rule proxies:
    input:
        candidates=rules.sample.output[0],
        data=rules.data.output[0],
    output:
        f"{RESULTS}/ablation/{{budget}}/proxies.csv",
    log:
        f"{LOGS}/ablation/{{budget}}/proxies.log",
    benchmark:
        f"{BENCHMARKS}/ablation/{{budget}}/proxies.tsv"
    conda:
        "../environment.yml"
    resources:
        gpu=1,
        mem_mb=4000,
    params:
        data=commands.scoring_data_args(config),
        search=config["search"],
        limit=config["ablation"]["random_students"],
        proxies=SHOOTOUT_PROXIES,
        minibatches=commands.comma_list(config["ablation"]["minibatches"]),
    shell:
        "blockswap score {input.candidates} {params.data} --limit {params.limit} "
        "--proxies {params.proxies} --minibatches {params.minibatches} "
        "--batch-size {params.search[batch_size]} --seed {params.search[seed]} --quiet "
        "--out {output} > {log} 2>&1"


# Rank stability: the same candidates scored at k = 1 under another scoring seed (initialisation and
# minibatch), once per seed of ablation.stability_seeds.
# snakemake --cores 1 results/default/ablation/60000/stability/seed-1.csv
rule proxies_reseeded:
    input:
        candidates=rules.sample.output[0],
        data=rules.data.output[0],
    output:
        f"{RESULTS}/ablation/{{budget}}/stability/seed-{{seed}}.csv",
    log:
        f"{LOGS}/ablation/{{budget}}/stability-{{seed}}.log",
    benchmark:
        f"{BENCHMARKS}/ablation/{{budget}}/stability-{{seed}}.tsv"
    conda:
        "../environment.yml"
    resources:
        gpu=1,
        mem_mb=4000,
    params:
        data=commands.scoring_data_args(config),
        search=config["search"],
        limit=config["ablation"]["stability_candidates"] or config["ablation"]["random_students"],
        proxies=SHOOTOUT_PROXIES,
    shell:
        "blockswap score {input.candidates} {params.data} --limit {params.limit} "
        "--proxies {params.proxies} --minibatches 1 "
        "--batch-size {params.search[batch_size]} --seed {wildcards.seed} --quiet "
        "--out {output} > {log} 2>&1"
