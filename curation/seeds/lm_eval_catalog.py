"""Task specs built from lm-evaluation-harness's task index, offline.

The installed `lm_eval` package's YAML index (`TaskManager().task_index`) is read
without building any task, so no dataset is downloaded. Every task with a training
split becomes a seed candidate; leaks are excluded (the training split is the scored
split, or is held out by name, or the family is a known eval-only copy), and sources
are deduplicated by (dataset path, dataset name, training split). Each spec reads its
rows from the hub and normalizes them with the task's own Jinja templates.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from taskseed.curation.errors import TaskseedError
from taskseed.curation.record import Format
from taskseed.curation.seeds.parsers.jinja import JinjaMapping
from taskseed.curation.seeds.taskspec import HELD_OUT_SPLIT_NAMES, TaskSpec
from taskseed.curation.terms.dataset_licenses import LicensePolicy, load_license_policy

EXCLUDED_FAMILIES = {
    "tinyBenchmarks": "subsets of eval sets",
    "mgsm": "training split is the 8 few-shot exemplars",
    "afrimgsm": "training split is the 8 few-shot exemplars (translated MGSM)",
}
LICENSE_UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class CatalogTask:
    """One lm-eval task config, reduced to what a seed spec needs."""

    name: str
    family: str
    dataset_path: str
    dataset_name: str | None
    training_split: str
    scored_split: str | None
    held_out: tuple[str, ...]
    output_type: str
    doc_to_text: Any
    doc_to_choice: Any
    doc_to_target: Any
    process_docs: str | None

    @property
    def source(self) -> tuple[str, str | None, str]:
        return (self.dataset_path, self.dataset_name, self.training_split)


@dataclass
class CatalogImport:
    """The outcome of an import: kept tasks, exclusions with reasons, one spec per source."""

    candidates: int = 0
    kept: list[CatalogTask] = field(default_factory=list)
    excluded: dict[str, str] = field(default_factory=dict)
    specs: dict[str, TaskSpec] = field(default_factory=dict)
    aliases: dict[str, list[str]] = field(default_factory=dict)

    @property
    def families(self) -> set[str]:
        return {t.family for t in self.kept}

    def summary(self) -> dict[str, Any]:
        reasons = Counter(self.excluded.values())
        uses_functions = sum(1 for s in self.specs.values() if _uses_functions(s))
        return {
            "tasks_with_training_split": self.candidates,
            "tasks_kept": len(self.kept),
            "families_kept": len(self.families),
            "tasks_excluded": len(self.excluded),
            "excluded_by_reason": dict(sorted(reasons.items())),
            "dataset_paths": len({t.dataset_path for t in self.kept}),
            "dataset_configs": len({(t.dataset_path, t.dataset_name) for t in self.kept}),
            "specs": len(self.specs),
            "specs_using_python_functions": uses_functions,
        }


def _uses_functions(spec: TaskSpec) -> bool:
    mapping = spec.train.mapping if spec.train else None
    if not isinstance(mapping, JinjaMapping):
        return False
    values = [mapping.process_docs, mapping.text_template, mapping.target_template,
              mapping.choices_template]
    return any(isinstance(v, str) and v.startswith("!function ") for v in values)


def load_task_index(include_path: str | None = None, include_defaults: bool = True) -> dict:
    """The installed lm-eval's task index (YAML only; nothing is downloaded)."""
    try:
        from lm_eval.tasks import TaskManager
    except ImportError:
        raise TaskseedError("importing the lm-eval catalog needs `pip install lm_eval`") from None
    manager = TaskManager(include_path=include_path, include_defaults=include_defaults)
    return manager.task_index


def tasks_root() -> Path:
    import lm_eval

    return Path(lm_eval.__file__).resolve().parent / "tasks"


def _function_ref(value: Any, roots: list[Path]) -> Any:
    """An index value naming a Python function (`/abs/dir/module.func`) as `!function a.b.c`."""
    if not isinstance(value, str) or not os.path.isabs(value) or "{{" in value:
        return value
    module_path, _, attr = value.rpartition(".")
    for root in roots:
        try:
            rel = Path(module_path).resolve().relative_to(root.parent.parent)
        except ValueError:
            continue
        return "!function " + ".".join(rel.parts) + "." + attr
    return "!function " + value


def leak_reason(cfg: dict[str, Any], family: str) -> str | None:
    """Why a task's training split may not seed, or None when it may."""
    train = cfg.get("training_split")
    scored = cfg.get("test_split") or cfg.get("validation_split")
    if family in EXCLUDED_FAMILIES:
        return EXCLUDED_FAMILIES[family]
    if train == scored:
        return "training split is the scored split"
    name = str(train).lower()
    if "test" in name or name in HELD_OUT_SPLIT_NAMES:
        return "training split is held out by name"
    if not cfg.get("dataset_path"):
        return "no dataset_path"
    if cfg.get("doc_to_text") is None:
        return "no doc_to_text"
    return None


def catalog_tasks(index: dict, roots: list[Path] | None = None) -> CatalogImport:
    """Seed candidates of a task index: kept tasks and excluded ones with reasons."""
    from lm_eval.tasks._index import Kind

    roots = roots or [tasks_root()]
    out = CatalogImport()
    for name in sorted(index):
        entry = index[name]
        cfg = entry.cfg or {}
        if entry.kind is not Kind.TASK or not cfg.get("training_split"):
            continue
        out.candidates += 1
        family = _family(entry.yaml_path, roots)
        reason = leak_reason(cfg, family)
        if reason is not None:
            out.excluded[name] = reason
            continue
        train = str(cfg["training_split"])
        held = [cfg.get("test_split"), cfg.get("validation_split"), cfg.get("fewshot_split")]
        out.kept.append(CatalogTask(
            name=name,
            family=family,
            dataset_path=str(cfg["dataset_path"]),
            dataset_name=cfg.get("dataset_name"),
            training_split=train,
            scored_split=cfg.get("test_split") or cfg.get("validation_split"),
            held_out=tuple(dict.fromkeys(str(s) for s in held if s and s != train)),
            output_type=str(cfg.get("output_type", "generate_until")),
            doc_to_text=_function_ref(cfg.get("doc_to_text"), roots),
            doc_to_choice=_function_ref(cfg.get("doc_to_choice"), roots),
            doc_to_target=_function_ref(cfg.get("doc_to_target"), roots),
            process_docs=_function_ref(cfg.get("process_docs"), roots),
        ))
    return out


def _family(yaml_path: Any, roots: list[Path]) -> str:
    if yaml_path is None:
        return "unknown"
    path = Path(yaml_path).resolve()
    for root in roots:
        try:
            return path.relative_to(root.resolve()).parts[0]
        except ValueError:
            continue
    return path.parent.name


def _template(value: Any) -> Any:
    if value is None or isinstance(value, int | str):
        return value
    if isinstance(value, list):
        return [str(v) for v in value]
    return str(value)


def _spec_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def build_spec(task: CatalogTask, policy: LicensePolicy | None = None) -> TaskSpec:
    """A seed spec reading the task's training split from the hub with its templates.

    The license comes from `policy` (configs/licenses.yaml by default) when it lists the
    dataset path; otherwise it stays "unknown" and the spec is not commercial.
    """
    policy = policy or load_license_policy()
    license_id = LICENSE_UNKNOWN
    if policy.is_listed(task.dataset_path):
        license_id = policy.license_of(task.dataset_path, task.dataset_name)
    hub = {"path": task.dataset_path, "name": task.dataset_name}
    mapping = {
        "parser": "jinja",
        "text_template": _template(task.doc_to_text),
        "choices_template": _template(task.doc_to_choice),
        "target_template": _template(task.doc_to_target),
        "process_docs": task.process_docs.removeprefix("!function ") if task.process_docs else None,
    }
    fmt = Format.MULTIPLE_CHOICE if task.output_type == "multiple_choice" else Format.FREE_FORM
    return TaskSpec.model_validate({
        "name": _spec_name(task.name),
        "family": task.family,
        "format": fmt,
        "license": license_id,
        "commercial": policy.commercial([license_id]),
        "source": {"dataset": task.dataset_path, "config": task.dataset_name},
        "scored_split": task.scored_split or "test",
        "train": {"split": task.training_split, "hub": {**hub, "split": task.training_split},
                  "mapping": mapping},
        "eval": [{"split": s, "hub": {**hub, "split": s}, "mapping": mapping}
                 for s in task.held_out],
    })


def import_catalog(index: dict, roots: list[Path] | None = None,
                   policy: LicensePolicy | None = None) -> CatalogImport:
    """Kept tasks deduplicated by source into one spec each (the first task name wins).

    Licenses come from `policy` (configs/licenses.yaml by default).
    """
    out = catalog_tasks(index, roots)
    policy = policy or load_license_policy()
    seen: dict[tuple[str, str | None, str], str] = {}
    for task in out.kept:
        if task.source in seen:
            out.aliases[seen[task.source]].append(task.name)
            continue
        try:
            spec = build_spec(task, policy)
        except ValueError as exc:
            out.excluded[task.name] = f"invalid spec: {str(exc).splitlines()[0]}"
            continue
        seen[task.source] = spec.name
        out.aliases[spec.name] = []
        out.specs[spec.name] = spec
    out.kept = [t for t in out.kept if t.name not in out.excluded]
    return out


def write_specs(specs: dict[str, TaskSpec], out_dir: Path) -> list[Path]:
    """Write one YAML spec per task; returns the written paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, spec in sorted(specs.items()):
        path = out_dir / f"{name}.yaml"
        data = spec.model_dump(mode="json", exclude_defaults=True)
        data["commercial"] = spec.commercial
        path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100))
        paths.append(path)
    return paths
