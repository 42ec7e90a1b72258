"""Judging a run: post-train checks, base-vs-tuned comparison, metrics, the report page, the label preview.
Imports core, stack, run, train and deploy."""
