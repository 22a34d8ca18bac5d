"""Between hosts and model: fetch, parse, experience pools, metrics, summary and report."""
