"""Seeds: task specs, seed-file readers, normalization into records, the lm-eval catalog
import, and the `seeds` and `normalize` stages."""
