"""The filter stages: rules (`validity`, `heuristics`, `verify`) and model judges
(`fact_check`, `self_consistency`, `llm_judge`, `reward`)."""
