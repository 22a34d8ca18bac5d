"""Between hosts and model: parse, experience pools, metrics, summary and report (fetch-logs, which talks to the hosts, is l4stb.fetch)."""
