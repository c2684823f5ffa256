"""Teacher backends, prompts, generation and enrichment."""
