"""slt_llm: gloss-free sign language translation with a frozen LLM decoder."""

__version__ = "0.1.0"
