"""Planning: what a workflow configuration runs, before anything runs.

`config_file` reads and validates a configuration (the schema, and the number checks JSON Schema
cannot make), `budgets` names the budgets and seeds of each stage, `plan` derives the networks a
run trains and costs, `config_checks` refuses the mistakes the schema cannot see, `run_cost`
estimates GPU-hours per stage from measured rates, `detection` does the same for the COCO
configuration (Table 4), and `summary` writes the plan as `blockswap plan` prints it. For the
workflow, `commands` builds the flags each job gets and `outputs` lists the files each target makes.
"""
