"""Developer proofs on CPU: the tiny random Qwen2 and the two smoke pipelines. Imports every library layer."""
