"""The run directory: its layout and records, the persona inside a saved chat template, greedy probes of a
checkpoint through that template. Imports core and stack."""
