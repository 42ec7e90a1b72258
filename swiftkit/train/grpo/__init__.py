"""GRPO: rewards (shared with eval), the plugin ms-swift imports in every rank, GRPO's preflight checks."""
