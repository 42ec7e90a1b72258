"""The base layer: errors, child processes, secrets, JSON Lines, the devices this process sees, the local copy of a
model, and the text vocabulary every stage shares (identity). Imports nothing of swiftkit outside core; builds only on
datasets_prep."""
