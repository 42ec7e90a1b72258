"""The installed stack and how to speak to it: versions against the supported ranges, the ms-swift dialect (the
seam ms-swift calls go through), compatibility shims, model registries, the remote-code rule, doctor. Imports core only."""
