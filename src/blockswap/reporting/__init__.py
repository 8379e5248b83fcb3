"""Results: the tables and figures of a run, and the paper's published numbers beside them."""
