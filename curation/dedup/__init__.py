"""Deduplication: exact (`exact_dedup`) and fuzzy (`fuzzy_dedup`, MinHash LSH)."""
