"""The stages whose model writes records: `generate` and `enrich`."""
