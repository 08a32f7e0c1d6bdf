"""What is checked before any provider call: the region asked for, and the cloud-init
template rendered for every region and node index.

A bad input must stop a deploy before it touches the cloud (exit code 2, nothing
half-done), so every action that changes the cloud runs ``validate`` first.
"""

from __future__ import annotations

import hashlib

from phoenix.cloud_config_schema import check_cloud_config
from phoenix.errors import BadRequest, InputError, TemplateError
from phoenix.release import PLACEHOLDER_RELEASE
from phoenix.render import RenderContext, render_user_data, template_sources
from phoenix.spec import Spec


def validate(spec: Spec, *, region: str | None = None) -> None:
    """Check the region, and the template rendered for every region and node index, each
    distinct rendering checked against cloud-init's own schema
    (``phoenix.cloud_config_schema``) with the template line."""
    validate_region(spec, region)
    # Every template a tag names, rendered or not: a release records them all, so one
    # that leaves the template's folder must stop here with its file and line.
    sources = _shown_sources(spec, template_sources(spec.template_path))
    checked: set[str] = set()  # digests of the texts checked against cloud-init's schema
    for each_region in spec.regions:
        for index in range(spec.count):
            text = placeholder_user_data(spec, each_region, index)
            digest = hashlib.sha256(text.encode()).hexdigest()
            if digest not in checked:  # nodes often render alike: check each text once
                checked.add(digest)
                check_cloud_config(text, template=str(spec.template_path), sources=sources)
            if spec.provider.name == "local":
                _check_local_user_data(spec, text)


def placeholder_user_data(spec: Spec, region: str, index: int) -> str:
    """The user-data of node ``index`` in ``region``, for a release not yet named
    (``validate`` and ``phoenix render``)."""
    return render_user_data(
        spec.template_path,
        RenderContext(app=spec.app, release=PLACEHOLDER_RELEASE, region=region, index=index,
                      vars=spec.resolved_vars),
    )


def validate_region(spec: Spec, region: str | None) -> None:
    """Refuse a region the spec does not list, before any provider call."""
    if region is not None and region not in spec.regions:
        raise InputError(
            f"--region {region}: not one of the spec's regions ({', '.join(spec.regions)})"
        )


def _shown_sources(spec: Spec, sources: dict[str, str]) -> dict[str, str]:
    """``template_sources`` keyed as messages name them: the spec's template first (as
    the spec names it), an included one by its path."""
    top = spec.template_path.name
    shown = {str(spec.template_path): sources[top]} if top in sources else {}
    shown.update((str(spec.template_path.parent / name), text)
                 for name, text in sources.items() if name != top)
    return shown


def _check_local_user_data(spec: Spec, text: str) -> None:
    """The local provider applies a documented subset of cloud-init: say so up front."""
    from phoenix.providers.local.cloudinit import parse_user_data

    try:
        parse_user_data(text)
    except BadRequest as exc:
        raise TemplateError(
            str(exc), template=str(spec.template_path)
        ) from exc
