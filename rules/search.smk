# Search stage (docs/paper.md s.1-2): per budget, sample candidates, score them by Fisher potential in
# parallel shards (static scatter/gather), and select the highest-scoring genotype.


# snakemake --cores 1 results/default/search/100000/candidates.csv
rule sample:
    input:
        sample_latency_input,
    output:
        f"{RESULTS}/search/{{budget}}/candidates.csv",
    log:
        f"{LOGS}/search/{{budget}}/sample.log",
    benchmark:
        f"{BENCHMARKS}/search/{{budget}}/sample.tsv"
    conda:
        "../environment.yml"
    params:
        arch=config["teacher"]["arch"],
        search=config["search"],
        data=commands.data_args(config),
        latency=commands.sample_latency_args(config, LATENCY_TABLE),
        keep=commands.keep_args(config),
    shell:
        "blockswap sample --arch {params.arch} --budget {wildcards.budget} {params.latency} {params.keep} "
        "--budget-kind {params.search[budget_kind]} --tolerance {params.search[tolerance]} "
        "--candidates {params.search[candidates]} --samples {params.search[samples]} "
        "--seed {params.search[seed]} {params.data} --out {output} > {log} 2>&1"


# snakemake --cores 1 results/default/search/100000/scores/shard-0.csv
rule score:
    input:
        candidates=rules.sample.output[0],
        data=rules.data.output[0],
    output:
        f"{RESULTS}/search/{{budget}}/scores/shard-{{shard}}.csv",
    log:
        f"{LOGS}/search/{{budget}}/score-{{shard}}.log",
    benchmark:
        f"{BENCHMARKS}/search/{{budget}}/score-{{shard}}.tsv"
    conda:
        "../environment.yml"
    resources:
        gpu=1,
        mem_mb=4000,
    params:
        search=config["search"],
        data=commands.scoring_data_args(config),
        proxy=commands.search_proxy_args(config),
    shell:
        "blockswap score {input.candidates} {params.data} --shard {wildcards.shard}/{params.search[shards]} "
        "{params.proxy}"
        "--batch-size {params.search[batch_size]} --seed {params.search[seed]} --quiet "
        "--out {output} > {log} 2>&1"


# snakemake --cores 2 results/default/search/100000/student.json
# The candidates are an input: select checks that the shards score each of them exactly once.
rule select:
    input:
        scores=SCORE_SHARDS,
        candidates=rules.sample.output[0],
    output:
        f"{RESULTS}/search/{{budget}}/student.json",
    log:
        f"{LOGS}/search/{{budget}}/select.log",
    benchmark:
        f"{BENCHMARKS}/search/{{budget}}/select.tsv"
    conda:
        "../environment.yml"
    params:
        proxy=config["search"]["proxy"],
    shell:
        "blockswap select {input.scores} --candidates {input.candidates} --proxy {params.proxy} "
        "--out {output} > {log} 2>&1"


# The samples ablation: the Fisher-best among the first N candidates of the same scored list.
# snakemake --cores 2 results/default/search/60000/bestof-10.json
rule select_first:
    input:
        scores=SCORE_SHARDS,
        candidates=rules.sample.output[0],
    output:
        f"{RESULTS}/search/{{budget}}/bestof-{{n}}.json",
    log:
        f"{LOGS}/search/{{budget}}/bestof-{{n}}.log",
    benchmark:
        f"{BENCHMARKS}/search/{{budget}}/bestof-{{n}}.tsv"
    wildcard_constraints:
        n="[0-9]+",
    conda:
        "../environment.yml"
    params:
        proxy=config["search"]["proxy"],
    shell:
        "blockswap select {input.scores} --candidates {input.candidates} --first {wildcards.n} "
        "--proxy {params.proxy} --out {output} "
        "> {log} 2>&1"


# search.method: evolution. Each budget's student is the fittest network of one regularised-evolution
# history (search.seed, search.samples proxy evaluations), checkpointed after every evaluation.
# snakemake --cores 1 results/default/search/60000/evolution/history.csv --config search='{method: evolution}'
rule evolve:
    input:
        data=rules.data.output[0],
    output:
        f"{RESULTS}/search/{{budget}}/evolution/history.csv",
    log:
        f"{LOGS}/search/{{budget}}/evolve.log",
    benchmark:
        f"{BENCHMARKS}/search/{{budget}}/evolve.tsv"
    conda:
        "../environment.yml"
    resources:
        gpu=1,
        mem_mb=4000,
    params:
        args=commands.guided_search_args(config),
        search=config["search"],
    shell:
        "blockswap search --method evolution --budget {wildcards.budget} --samples {params.search[samples]} "
        "--seed {params.search[seed]} {params.args} --out {output} > {log} 2>&1"


rule select_evolved:
    input:
        f"{RESULTS}/search/{{budget}}/evolution/history.csv",
    output:
        f"{RESULTS}/search/{{budget}}/student.json",
    log:
        f"{LOGS}/search/{{budget}}/select-evolved.log",
    benchmark:
        f"{BENCHMARKS}/search/{{budget}}/select-evolved.tsv"
    conda:
        "../environment.yml"
    shell:
        "blockswap best {input} --out {output} > {log} 2>&1"


if EVOLVED:

    ruleorder: select_evolved > select

else:

    ruleorder: select > select_evolved
