"""configs/licenses.yaml and the license policy: coverage, sources, commercial use, bad files."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from taskseed.curation.errors import ConfigError
from taskseed.curation.seeds.lm_eval_catalog import import_catalog, load_task_index
from taskseed.curation.seeds.taskspec import is_commercial, load_task_spec
from taskseed.curation.terms.dataset_licenses import (
    LicensePolicy,
    default_licenses_path,
    load_license_policy,
)

TOY_TASKS = Path(__file__).resolve().parent / "fixtures" / "lm_eval_tasks"
NOT_COMMERCIAL = [
    "unknown", "other", "", "CC-BY-NC-4.0", "cc-by-nc-4.0", "CC-BY-NC-SA-4.0", "CC-BY-NC-ND-4.0",
    "CC-BY-NC-3.0", "CC-BY-ND-4.0", "LicenseRef-RACE-noncommercial-research",
    "LicenseRef-JAQKET-train-noncommercial", "LicenseRef-Google-PAWS", "C-UDA-1.0",
    "research-only", "WTFPL",
]


@pytest.fixture(scope="module")
def policy() -> LicensePolicy:
    return load_license_policy()


@pytest.fixture(scope="module")
def imported():
    return import_catalog(load_task_index())


def _hand_written_datasets(repo: Path) -> set[str]:
    specs = sorted((repo / "configs" / "tasks").rglob("*.yaml"))
    assert len(specs) >= 20
    return {load_task_spec(p).source.dataset for p in specs}


def test_every_imported_dataset_path_is_listed(policy, imported):
    paths = {t.dataset_path for t in imported.kept}
    assert len(paths) >= 100
    assert sorted(p for p in paths if not policy.is_listed(p)) == []


def test_every_hand_written_spec_dataset_is_listed(policy, repo):
    datasets = _hand_written_datasets(repo)
    assert {"allenai/ai2_arc", "openai/gsm8k", "taskseed/quickstart"} <= datasets
    assert sorted(d for d in datasets if not policy.is_listed(d)) == []


def test_known_licenses_name_an_https_source(policy):
    entries = [(path, e) for path, d in policy.datasets.items()
               for e in (d, *d.configs.values())]
    for path, entry in entries:
        if entry.license == "unknown" or entry.bundled:
            assert entry.source is None and entry.note, path
        else:
            assert entry.source and entry.source.startswith("https://"), path
    assert [p for p, d in policy.datasets.items() if d.bundled] == ["taskseed/quickstart"]


def test_allowlist_holds_only_commercial_licenses(policy):
    assert policy.allowlist >= {"mit", "apache-2.0", "cc-by-sa-4.0", "cc-by-4.0", "cc0-1.0"}
    for license_id in policy.allowlist:
        assert is_commercial(license_id), license_id
        assert "-nd" not in license_id and not license_id.startswith("licenseref-")


@pytest.mark.parametrize("license_id", NOT_COMMERCIAL)
def test_policy_never_admits_restricted_or_unknown(policy, license_id):
    assert not policy.allows(license_id)
    assert not policy.commercial([license_id])
    assert not policy.commercial(["MIT", license_id])


def test_commercial_needs_every_license_on_the_allowlist(policy):
    assert policy.commercial(["MIT", "CC-BY-SA-4.0", "Apache-2.0"])
    assert policy.commercial(iter(["mit", " CC-BY-4.0 "]))
    assert not policy.commercial([])
    assert not policy.commercial(["CC-BY-SA-4.0", "unknown"])


def test_recorded_licenses_and_their_commercial_use(policy):
    expected = {
        "allenai/ai2_arc": ("CC-BY-SA-4.0", True), "openai/gsm8k": ("MIT", True),
        "cais/mmlu": ("MIT", True), "rajpurkar/squad_v2": ("CC-BY-SA-4.0", True),
        "allenai/sciq": ("CC-BY-NC-3.0", False), "facebook/anli": ("CC-BY-NC-4.0", False),
        "EleutherAI/race": ("LicenseRef-RACE-noncommercial-research", False),
        "allenai/social_i_qa": ("unknown", False),
    }
    got = {p: (policy.license_of(p), policy.commercial([policy.license_of(p)]))
           for p in expected}
    assert got == expected
    restricted = [p for p, d in policy.datasets.items()
                  if not is_commercial(d.license) and policy.commercial([d.license])]
    assert restricted == []


def test_license_of_unlisted_paths_and_config_overrides(policy):
    assert policy.license_of("nobody/no-such-dataset") == "unknown"
    assert not policy.is_listed("nobody/no-such-dataset")
    assert policy.license_of("aps/super_glue", "boolq") == "CC-BY-SA-3.0"
    assert policy.license_of("aps/super_glue", "cb") == "unknown"
    assert policy.license_of("aps/super_glue") == "unknown"
    assert policy.license_of("allenai/ai2_arc", "ARC-Easy") == "CC-BY-SA-4.0"


def test_default_path_is_the_repository_file(repo):
    assert default_licenses_path() == repo / "configs" / "licenses.yaml"
    assert load_license_policy(repo / "configs" / "licenses.yaml") == load_license_policy()


GOOD = {"license": "MIT", "source": "https://example.org/LICENSE"}


def _bad(**entry) -> dict:
    return {"commercial_allowlist": ["MIT"], "datasets": {"a/b": {**GOOD, **entry}}}


@pytest.mark.parametrize(("data", "key"), [
    ({"commercial_allowlist": ["MIT"], "datasets": {}, "extra": 1}, "extra"),
    ({"datasets": {}}, "commercial_allowlist"),
    ({"commercial_allowlist": ["MIT", "CC-BY-NC-4.0"], "datasets": {}}, "commercial_allowlist"),
    ({"commercial_allowlist": ["unknown"], "datasets": {}}, "commercial_allowlist"),
    ({"commercial_allowlist": ["CC-BY-ND-4.0"], "datasets": {}}, "commercial_allowlist"),
    ({"commercial_allowlist": ["LicenseRef-X"], "datasets": {}}, "commercial_allowlist"),
    (_bad(source="http://example.org/LICENSE"), "datasets.a/b.source"),
    (_bad(source="not a url"), "datasets.a/b.source"),
    (_bad(source=None), "datasets.a/b"),
    (_bad(license="unknown"), "datasets.a/b"),
    (_bad(license="unknown", source=None), "datasets.a/b"),
    (_bad(license="CC BY 4.0"), "datasets.a/b.license"),
    (_bad(licence="MIT"), "datasets.a/b.licence"),
    (_bad(configs={"x": {"license": "MIT", "source": None}}), "datasets.a/b.configs.x"),
])
def test_malformed_file_is_one_line_error_naming_file_and_key(tmp_path, data, key):
    path = tmp_path / "bad-licenses.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as err:
        load_license_policy(path)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: {key}: ")


@pytest.mark.parametrize(("text", "where"), [
    ("commercial_allowlist: [MIT\ndatasets: {}\n", "invalid YAML"),
    ("- MIT\n", "expected a mapping"),
])
def test_unreadable_file_is_one_line_error(tmp_path, text, where):
    path = tmp_path / "licenses.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_license_policy(path)
    assert "\n" not in str(err.value) and str(path) in str(err.value) and where in str(err.value)


def test_missing_file_is_one_line_error(tmp_path):
    path = tmp_path / "nowhere.yaml"
    with pytest.raises(ConfigError, match="file not found") as err:
        load_license_policy(path)
    assert str(err.value).startswith(str(path)) and "\n" not in str(err.value)


def test_imported_specs_take_licenses_from_the_policy(tmp_path, imported):
    specs = imported.specs
    assert (specs["gsm8k"].license, specs["gsm8k"].commercial) == ("MIT", True)
    assert (specs["sciq"].license, specs["sciq"].commercial) == ("CC-BY-NC-3.0", False)
    assert all(s.license != "unknown" or not s.commercial for s in specs.values())

    path = tmp_path / "licenses.yaml"
    path.write_text(yaml.safe_dump({
        "commercial_allowlist": ["MIT"],
        "datasets": {"example/toymath": {"license": "MIT", "source": "https://example.org/m"}},
    }))
    toy = import_catalog(load_task_index(str(TOY_TASKS), include_defaults=False),
                         roots=[TOY_TASKS], policy=load_license_policy(path))
    got = {s.source.dataset: (s.license, s.commercial) for s in toy.specs.values()}
    assert got == {"example/toymath": ("MIT", True), "example/toyqa": ("unknown", False)}
