"""Search: sampling students inside a budget, scoring them with proxies, evolution."""
