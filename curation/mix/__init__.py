"""The two pretraining datasets: the `export` and `mix` stages, their selection, layout,
templates and token counts."""
