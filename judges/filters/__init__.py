"""The filter stages: rules (`validity`, `heuristics`, `verify`) and model judges
(`self_consistency`, `llm_judge`, `reward`)."""
