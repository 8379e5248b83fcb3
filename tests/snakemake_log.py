"""Reading Snakemake's console output, shared by the workflow tests and scripts/slurm-test.sh."""


def job_counts(output: str) -> dict[str, int]:
    """The "Job stats" table Snakemake prints before running (or dry-running): rule -> job count."""
    lines = output.split("Job stats:")[1].strip().splitlines()[2:]  # skip the header and its rule
    counts = {}
    for line in lines:
        parts = line.split()
        if len(parts) != 2:
            break
        counts[parts[0]] = int(parts[1])
    return counts
