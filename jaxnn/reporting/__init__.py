"""What a run reports: summary.json, tables and report.md, plots, metrics.jsonl, console lines."""
