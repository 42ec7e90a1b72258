"""swiftkit: a thin, sharp wrapper around ms-swift for fine-tuning Chinese chat models.

Importing this package is cheap on purpose: no torch, no ms-swift.
"""
__version__ = "0.1.0"
