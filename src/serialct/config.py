"""Load and validate the workflow config; fill every default from the schema.

The schema (``schemas/config.schema.yaml``) is the one source of truth for defaults. The
Snakefile validates with the same file (``workflow/schemas`` links here).
"""

from __future__ import annotations

import copy
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from serialct.errors import InputError

SCHEMA_PACKAGE = "serialct.schemas"


def load_schema(name: str) -> dict[str, Any]:
    """Read a schema shipped in ``serialct/schemas`` (e.g. ``config``, ``clinical``); a copy the
    caller may change (the file is parsed once per process, with libyaml when present)."""
    return copy.deepcopy(_parsed_schema(name))


@cache
def _parsed_schema(name: str) -> dict[str, Any]:
    text = resources.files(SCHEMA_PACKAGE).joinpath(f"{name}.schema.yaml").read_text()
    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def _extend_with_default(validator_class: type) -> type:
    """A validator that writes schema defaults into the instance (the jsonschema FAQ recipe)."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):  # type: ignore[no-untyped-def]
        if isinstance(instance, dict):
            for prop, subschema in properties.items():
                if "default" in subschema:
                    instance.setdefault(prop, copy.deepcopy(subschema["default"]))
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


DefaultFillingValidator = _extend_with_default(jsonschema.Draft202012Validator)


def validate_config(config: dict[str, Any], source: str = "config") -> dict[str, Any]:
    """Validate ``config`` in place, fill defaults, and return it.

    Raises InputError naming ``source`` and the offending key on the first problem.
    """
    schema = load_schema("config")
    # twice: defaults of nested objects are filled once their parent default exists
    for _ in range(2):
        errors = sorted(DefaultFillingValidator(schema).iter_errors(config), key=lambda e: e.path)
        if errors:
            err = errors[0]
            where = "/".join(str(p) for p in err.absolute_path) or "(top level)"
            raise InputError(f"{source}: key {where}: {err.message}")
    return config


def _yaml_where(exc: yaml.YAMLError) -> str:
    """Where and what a YAML error is, on one line (its own text spans several lines)."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"{where}: {problem}"


def load_config(path: str | Path) -> dict[str, Any]:
    """Read a YAML config file and validate it (defaults filled)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: config file not found")
    try:
        config = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: not valid YAML{_yaml_where(exc)}") from exc
    if not isinstance(config, dict):
        raise InputError(f"{path}: expected a mapping of config keys at the top level")
    return validate_config(config, source=str(path))


def defaults() -> dict[str, Any]:
    """The config with every default filled and one placeholder centre (for tests and tools)."""
    cfg: dict[str, Any] = {"centers": {"X": {"dicom": ".", "clinical": "clinical.tsv"}}}
    return validate_config(cfg)
