"""Just enough of docker compose to check our compose files without a Docker engine.

- interpolation of `${VAR}`, `${VAR:-default}`, `${VAR-default}`, `${VAR:?error}`, `${VAR?error}`,
  `${VAR:+alt}`, `$VAR` and `$$` (https://github.com/compose-spec/compose-spec/blob/main/12-interpolation.md)
- merging of several files by the rules of the Compose Specification for the keys we use
  (https://github.com/compose-spec/compose-spec/blob/main/13-merge.md): mappings merge
  recursively; `environment` and `labels` merge by variable name; `volumes` by target path;
  `ports` and other sequences are appended without duplicates; `command`, `entrypoint` and
  `healthcheck.test` are replaced.
"""

import re
from pathlib import Path

import yaml

PROJECT_ROOT = Path(__file__).resolve().parents[2]

VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
    r"|(?P<plain>[A-Za-z_][A-Za-z0-9_]*))"
)
REPLACED_SEQUENCES = {"command", "entrypoint", "test"}


class InterpolationError(Exception):
    pass


def load(name: str) -> dict:
    return yaml.safe_load((PROJECT_ROOT / name).read_text())


def variable_references(value) -> list[tuple[str, str | None]]:
    """(name, operator) of every `${...}`/`$NAME` in the values of a parsed compose file.

    Values only: compose interpolates neither comments nor keys, and `$$` is a literal `$`.
    """
    if isinstance(value, dict):
        return [ref for item in value.values() for ref in variable_references(item)]
    if isinstance(value, list):
        return [ref for item in value for ref in variable_references(item)]
    if not isinstance(value, str):
        return []
    return [
        (match.group("braced") or match.group("plain"), match.group("op"))
        for match in VARIABLE.finditer(value)
        if not match.group("escaped")
    ]


def interpolate(value, env: dict[str, str]):
    if isinstance(value, dict):
        return {key: interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, env) for item in value]
    if isinstance(value, str):
        return VARIABLE.sub(lambda match: _substitute(match, env), value)
    return value


def _substitute(match: re.Match, env: dict[str, str]) -> str:
    if match.group("escaped"):
        return "$"
    name = match.group("braced") or match.group("plain")
    op, arg = match.group("op"), match.group("arg") or ""
    value = env.get(name)
    unset_or_empty = not value
    if op == ":-":
        return arg if unset_or_empty else value
    if op == "-":
        return arg if value is None else value
    if (op == ":?" and unset_or_empty) or (op == "?" and value is None):
        raise InterpolationError(f"{name}: {arg}")
    if op == ":+":
        return "" if unset_or_empty else arg
    if op == "+":
        return "" if value is None else arg
    return value or ""


def merge(base: dict, override: dict) -> dict:
    merged = dict(base)
    for key, value in override.items():
        if key == "services":
            services = dict(base.get("services", {}))
            for name, service in value.items():
                services[name] = merge_service(services.get(name, {}), service)
            merged[key] = services
        else:
            merged[key] = merge_values(key, base.get(key), value)
    return merged


def merge_service(base: dict, override: dict) -> dict:
    merged = dict(base)
    for key, value in override.items():
        if key in ("environment", "labels"):
            merged[key] = {**as_mapping(base.get(key)), **as_mapping(value)}
        elif key == "volumes":
            merged[key] = merge_volumes(base.get(key, []), value)
        elif key == "depends_on":
            merged[key] = {**as_dependencies(base.get(key)), **as_dependencies(value)}
        else:
            merged[key] = merge_values(key, base.get(key), value)
    return merged


def merge_values(key: str, base, override):
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for name, value in override.items():
            merged[name] = merge_values(name, base.get(name), value)
        return merged
    if isinstance(base, list) and isinstance(override, list) and key not in REPLACED_SEQUENCES:
        return base + [item for item in override if item not in base]
    return override


def as_mapping(value) -> dict:
    if value is None:
        return {}
    if isinstance(value, dict):
        return dict(value)
    return dict(item.split("=", 1) if "=" in item else (item, None) for item in value)


def as_dependencies(value) -> dict:
    if value is None:
        return {}
    if isinstance(value, list):
        return {name: {"condition": "service_started"} for name in value}
    return dict(value)


def mount_target(volume) -> str:
    return volume["target"] if isinstance(volume, dict) else volume.split(":")[1]


def merge_volumes(base: list, override: list) -> list:
    by_target = {mount_target(volume): volume for volume in base}
    by_target.update({mount_target(volume): volume for volume in override})
    return list(by_target.values())


def parse_mount(volume) -> tuple[str, str, bool]:
    """(source, target, read_only) of a service volume in short or long syntax."""
    if isinstance(volume, dict):
        return volume.get("source", ""), volume["target"], bool(volume.get("read_only"))
    parts = volume.split(":")
    options = parts[2].split(",") if len(parts) > 2 else []
    return parts[0], parts[1], "ro" in options
