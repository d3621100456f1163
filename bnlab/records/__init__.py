"""Run records and their views: ``store`` (metrics.jsonl, summary.json, config.yaml: read, write,
validate), ``wandb_log`` (the W&B mirror of the records) and ``console`` (the live progress bar and
the final table)."""
