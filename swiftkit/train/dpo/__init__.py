"""DPO: preference pairs for a persona (the pair shape, their rejected answers, `swiftkit prep-pairs`) and DPO's
preflight checks."""
