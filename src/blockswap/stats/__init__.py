"""Statistics every layer above may use: rank correlations and confidence intervals.

`ranks` holds Kendall's tau-b, Spearman's rho and Kendall's partial tau, vectorised over bootstrap
resamples; `intervals` the bootstrap settings, the percentile bootstrap interval and the Student-t
interval of a mean. Nothing here knows about networks, proxies or result files.
"""
