"""Environments: one spec, an overlay per environment (``--env staging``).

A spec may end in ``environments: {staging: {count: 1, vars: {...}}, prod: {...}}``, and a
file beside it named after it (``phoenix.staging.yaml`` beside ``phoenix.yaml``) may add
to one or define it. ``--env NAME`` deep-merges, in that order, the environment's overlay
and then that file over the base spec: mappings merge key by key, anything else (a
list, a number, a string) is replaced whole, as Helm merges values files.

Each environment is its own instance of the app, so that staging can never touch what
production serves: unless the overlay says otherwise, the environment's name joins the
app's name (``hello`` → ``hello-staging``: its own servers, records and lease), the load
balancer's pool (``hello`` → ``hello-staging``) and the DNS record (``www`` →
``www-staging``). Without ``--env`` the base spec is used as written.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

ENVIRONMENTS_KEY = "environments"
NAME_PATTERN = r"^[a-z]([a-z0-9-]{0,30}[a-z0-9])?$"
_NAME = re.compile(NAME_PATTERN)
NAME_RULE = "1-32 lowercase letters, digits and dashes, starting with a letter"

KeyPath = tuple[Any, ...]


def valid_name(name: object) -> bool:
    """An environment name joins the app's, pool's and record's names (and a file's)."""
    return isinstance(name, str) and _NAME.match(name) is not None


def overlay_file(spec_path: Path, env: str) -> Path:
    """The file beside the spec that adds to environment ``env``: ``phoenix.staging.yaml``
    for ``phoenix.yaml``."""
    return spec_path.with_name(f"{spec_path.stem}.{env}{spec_path.suffix}")


def overlay_files(spec_path: Path) -> dict[str, Path]:
    """Environment name -> the file beside the spec that adds to it."""
    found: dict[str, Path] = {}
    for path in spec_path.parent.glob(f"{glob_escape(spec_path.stem)}.*{spec_path.suffix}"):
        env = path.name[len(spec_path.stem) + 1: len(path.name) - len(spec_path.suffix)]
        if valid_name(env) and path.is_file():
            found[env] = path
    return found


def is_overlay_of_a_spec(path: Path) -> bool:
    """Whether ``path`` (``phoenix.staging.yaml``) adds to a spec beside it
    (``phoenix.yaml``), so a folder of specs does not load it as an app of its own."""
    stem, _, env = path.stem.rpartition(".")
    return bool(stem) and valid_name(env) and path.with_name(stem + path.suffix).is_file()


def glob_escape(text: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", text)


def deep_merge(base: Any, overlay: Any) -> Any:
    """``overlay`` over ``base``: mappings merged key by key, anything else replaced."""
    if isinstance(base, dict) and isinstance(overlay, dict):
        merged = dict(base)
        for key, value in overlay.items():
            merged[key] = deep_merge(base[key], value) if key in base else value
        return merged
    return overlay


def instance_names(base: dict[str, Any], overlay: dict[str, Any], env: str) -> dict[str, Any]:
    """What makes the environment its own instance, where the overlay does not say:
    ``env`` joined to the app's name, the pool's and the DNS record's."""
    derived: dict[str, Any] = {}
    if "app" not in overlay and isinstance(base.get("app"), str):
        derived["app"] = f"{base['app']}-{env}"
    lb = overlay.get("load_balancer")
    base_lb = base.get("load_balancer")
    if isinstance(base_lb, dict) and isinstance(base_lb.get("pool"), str) and not (
            isinstance(lb, dict) and "pool" in lb):
        derived["load_balancer"] = {"pool": f"{base_lb['pool']}-{env}"}
    dns = overlay.get("dns")
    base_dns = base.get("dns")
    if isinstance(base_dns, dict) and isinstance(base_dns.get("record"), str) and not (
            isinstance(dns, dict) and "record" in dns):
        derived["dns"] = {"record": _record_for(base_dns["record"], env)}
    return derived


def _record_for(record: str, env: str) -> str:
    """``www`` -> ``www-staging``; ``api.v2`` -> ``api-staging.v2`` (the first label)."""
    first, dot, rest = record.partition(".")
    return f"{first}-{env}{dot}{rest}"
