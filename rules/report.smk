# Report stage: the resolved configuration (schema defaults applied) beside the results.


# snakemake --cores 1 results/default/config.yaml
rule resolved_config:
    output:
        f"{RESULTS}/config.yaml",
    log:
        f"{LOGS}/config.log",
    conda:
        "../environment.yml"
    params:
        text=yaml.safe_dump(config, sort_keys=False),
    shell:
        "printf '%s' {params.text:q} > {output} 2> {log}"
