"""Why records are or are not commercial, and the model terms a data set carries.

A record is commercial when its seeds' licenses are on the allowlist (configs/licenses.yaml),
its task spec does not narrow that, and every model whose text it contains allows training
on its outputs (configs/model_licenses.yaml). `terms_summary` counts, for a set of record
files, the records per model and license, the obligations that come with them, and the
reasons records are not commercial; manifests, the dataset card, the report and the run
summary show it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from taskseed.curation.terms.dataset_licenses import LicensePolicy, load_license_policy
from taskseed.curation.terms.model_licenses import ModelLicensePolicy, load_model_licenses

COLUMNS = ["license", "commercial", "lineage"]


def exclusions(row: dict[str, Any], seeds: LicensePolicy,
               models: ModelLicensePolicy) -> list[str]:
    """Why a record (a row with license, commercial and lineage) is not commercial; empty
    when it is."""
    if row["commercial"]:
        return []
    reasons = []
    if not seeds.allows(row["license"]):
        reasons.append(f"seed license {row['license']} is not on the commercial allowlist")
    for used in (row.get("lineage") or {}).get("models") or []:
        terms = models.terms_of(used["license"])
        if not terms.allows_training:
            said = ("are unknown" if terms.outputs == "unknown"
                    else "do not allow training on its outputs")
            reasons.append(f"the {used['stage']} model {used['model']}: its terms "
                           f"({used['license']}) {said}")
    return reasons or ["its task spec or a seed row is marked not commercial"]


def terms_summary(files: Iterable[Path]) -> dict[str, Any]:
    """Records, commercial records, records per model and license (with what the terms
    allow and oblige), and records per reason they are not commercial."""
    seeds, models = load_license_policy(), load_model_licenses()
    used: Counter[tuple[str, str, str]] = Counter()
    excluded: Counter[str] = Counter()
    records = commercial = 0
    for path in files:
        for row in pq.read_table(path, columns=COLUMNS).to_pylist():
            records += 1
            commercial += bool(row["commercial"])
            for m in {(m["stage"], m["model"], m["license"])
                      for m in (row["lineage"] or {}).get("models") or []}:
                used[m] += 1
            excluded.update(exclusions(row, seeds, models))
    rows = []
    for (stage, model, license_id), n in sorted(used.items()):
        terms = models.terms_of(license_id)
        rows.append({"stage": stage, "model": model, "license": license_id,
                     "outputs": terms.outputs, "obligations": list(terms.obligations),
                     "source": terms.source, "records": n})
    return {"records": records, "commercial": commercial, "models": rows,
            "not_commercial": dict(excluded.most_common())}


def obligations(summary: dict[str, Any]) -> dict[str, list[str]]:
    """The obligations of every license in a terms summary, by license."""
    return {m["license"]: m["obligations"] for m in summary.get("models", [])
            if m["obligations"]}
