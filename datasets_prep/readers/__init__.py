"""Readers: one per source family. Each only reads and normalizes, yielding Conversation | Reject."""
