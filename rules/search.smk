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
    conda:
        "../environment.yml"
    params:
        arch=config["teacher"]["arch"],
        search=config["search"],
        dataset=config["dataset"],
        image_size=image_size_arg(),
        latency=sample_latency_args(),
    shell:
        "blockswap sample --arch {params.arch} --budget {wildcards.budget} {params.latency} "
        "--budget-kind {params.search[budget_kind]} --tolerance {params.search[tolerance]} "
        "--candidates {params.search[candidates]} --samples {params.search[samples]} "
        "--seed {params.search[seed]} --dataset {params.dataset} {params.image_size} "
        "--out {output} > {log} 2>&1"


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
        data=data_args(),
    shell:
        "blockswap score {input.candidates} {params.data} --shard {wildcards.shard}/{params.search[shards]} "
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
    conda:
        "../environment.yml"
    shell:
        "blockswap select {input.scores} --candidates {input.candidates} --out {output} > {log} 2>&1"


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
    wildcard_constraints:
        n="[0-9]+",
    conda:
        "../environment.yml"
    shell:
        "blockswap select {input.scores} --candidates {input.candidates} --first {wildcards.n} --out {output} "
        "> {log} 2>&1"
