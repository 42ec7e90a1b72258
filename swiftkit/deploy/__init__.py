"""After training: `swift infer`, `swift deploy` (serve), the backend choice, LoRA merge, GGUF and Ollama export.
Imports core, stack, run and train."""
