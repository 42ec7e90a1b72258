"""Training: recipe -> plan -> preflight -> launch -> worker. Each method is a row of methods.py; a method with code
of its own has a folder (grpo/). Imports core, stack and run."""
