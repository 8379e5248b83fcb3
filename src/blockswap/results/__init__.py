"""Results: tables, figures, the paper's numbers, correlations and the run plan."""
