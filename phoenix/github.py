"""GitHub Actions: error annotations and the job summary, for a CLI run in a workflow.

When ``GITHUB_ACTIONS=true`` the CLI prints ``::error file=F,line=N::message`` for each
spec and template problem (the runner marks the pull request's line with it) and appends
a markdown summary of validate, plan, deploy, rollback, failover, failback and repave to
the file ``GITHUB_STEP_SUMMARY`` names. This module only turns results into that text and
appends the file; the CLI decides when, and masks secrets in what it is given.

Standard library only (the results are types for the checker alone), so importing it
costs ``phoenix --help`` nothing.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from phoenix.errors import PhoenixError, SpecError, TemplateError

if TYPE_CHECKING:
    from phoenix.api import PlanReport
    from phoenix.engine import DeployResult
    from phoenix.spec import Spec

__all__ = [
    "SUMMARIZED",
    "Annotation",
    "active",
    "append_summary",
    "error_annotations",
    "failure_summary",
    "plan_summary",
    "result_summary",
    "validate_summary",
]

# The commands whose outcome goes into the job summary.
SUMMARIZED = frozenset(
    {"validate", "plan", "deploy", "rollback", "failover", "failback", "repave"}
)

# A SpecError problem reads ``file:line: field: message`` (phoenix.spec_loader); the
# file part stops at the first ``:N: `` so a message quoting ``a:1: b`` stays whole.
_PROBLEM = re.compile(r"^(?P<file>(?:(?!: ).)+?):(?P<line>\d+): (?P<message>.*)$", re.DOTALL)

# Replaces secret values in a text (the CLI's ``_Session.mask``). Everything here masks
# values as they come, before escaping or markdown could change how a secret is spelt.
Mask = Callable[[str], str]


def _same(text: str) -> str:
    return text


def active(environ: Mapping[str, str] | None = None) -> bool:
    """Whether this process runs as a GitHub Actions step."""
    return (os.environ if environ is None else environ).get("GITHUB_ACTIONS") == "true"


# --- annotations ------------------------------------------------------------------------


def escape_data(text: str) -> str:
    """A workflow command's message, escaped as the runner unescapes it."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    """A workflow command's property value (``file=``, ``title=``): ``:`` and ``,`` too."""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


@dataclasses.dataclass(frozen=True)
class Annotation:
    """One ``::error`` workflow command: a message, and where it points when known."""

    message: str
    file: str | None = None
    line: int | None = None
    title: str = "phoenix"

    def command(self) -> str:
        """The line to print: ``::error file=F,line=N,title=T::message``."""
        props = []
        if self.file is not None:
            props.append(f"file={escape_property(self.file)}")
            if self.line is not None:
                props.append(f"line={self.line}")
        props.append(f"title={escape_property(self.title)}")
        return f"::error {','.join(props)}::{escape_data(self.message)}"


def error_annotations(
    exc: PhoenixError, *, title: str = "phoenix", mask: Mask = _same,
    environ: Mapping[str, str] | None = None,
) -> list[Annotation]:
    """The annotations for a failed command: one per spec problem and for a template
    error at their file and line (made relative to ``GITHUB_WORKSPACE``, as the runner
    wants), one without a place for any other error."""
    workspace = (os.environ if environ is None else environ).get("GITHUB_WORKSPACE")
    if isinstance(exc, SpecError):
        found = []
        for problem in map(mask, exc.problems):
            match = _PROBLEM.match(problem)
            if match is None:
                found.append(Annotation(problem, title=title))
            else:
                found.append(Annotation(
                    match["message"], _in_workspace(match["file"], workspace),
                    int(match["line"]), title))
        return found or [Annotation(mask(str(exc)), title=title)]
    if isinstance(exc, TemplateError):
        where = f"{exc.template}:{exc.line}" if exc.line is not None else exc.template
        message = mask(str(exc).removeprefix(f"{where}: "))
        return [Annotation(message, _in_workspace(exc.template, workspace), exc.line, title)]
    return [Annotation(mask(str(exc)) or type(exc).__name__, title=title)]


def _in_workspace(file: str, workspace: str | None) -> str:
    """``file`` relative to the checkout (annotations name files from its root); as it
    was given when there is no workspace or the file is outside it."""
    if not workspace:
        return file
    absolute = Path(os.path.abspath(file))
    try:
        return absolute.relative_to(os.path.abspath(workspace)).as_posix()
    except ValueError:
        return file


# --- the job summary --------------------------------------------------------------------


def append_summary(markdown: str, environ: Mapping[str, str] | None = None) -> bool:
    """Append ``markdown`` to the job summary; False when no summary file is named."""
    path = (os.environ if environ is None else environ).get("GITHUB_STEP_SUMMARY")
    if not path:
        return False
    with open(path, "a", encoding="utf-8") as summary:
        # A blank line after each command's part, so the next one starts a new block.
        summary.write(markdown.rstrip("\n") + "\n\n")
    return True


def result_summary(
    command: str, result: DeployResult, errors: Sequence[str] = (), *, mask: Mask = _same
) -> str:
    """A deploy, rollback, failover, failback or repave: what it did, as a table."""
    code = _coder(mask)
    rows = [
        ("App", code(result.app)),
        ("Outcome", code(result.outcome)),
        ("Release", code(result.release)),
        ("Previous release", code(result.previous_release) if result.previous_release
         else "none"),
        ("Region", code(result.region)),
        ("Regions tried", ", ".join(code(a.region) for a in result.attempts)
         if result.attempts else code(result.region)),
        ("Nodes", f"{len(result.nodes)}"
         + (f": {', '.join(code(node) for node in result.nodes)}" if result.nodes else "")),
        ("Steps", str(result.steps)),
        ("Duration", _seconds(result.seconds)),
        ("Deploy id", code(result.deploy_id)),
    ]
    if result.endpoint and result.outcome in ("succeeded", "unchanged"):
        rows.append(("Endpoint", code(result.endpoint)))
    if result.dns is not None:
        rows.append(("DNS", code(result.dns)))
    if result.reason:
        rows.append(("Reason", code(result.reason)))
    parts = [_heading(command, mask(result.outcome)), _table(("Field", "Value"), rows)]
    if result.attempts:
        parts.append(_table(
            ("#", "Region", "Outcome", "Release", "Reason"),
            [(str(number), code(a.region), code(a.outcome),
              code(a.release) if a.release else "-",
              code(_attempt_reason(a.reason, a.radius, a.cleaned_up)) if a.reason else "-")
             for number, a in enumerate(result.attempts, 1)],
            title="Regions tried",
        ))
    parts.extend(_errors(errors, mask))
    return "\n".join(parts)


def validate_summary(spec_file: str, spec: Spec, *, mask: Mask = _same) -> str:
    """A spec that validated: what it describes."""
    code = _coder(mask)
    secrets = sorted(spec.secret_names)
    rows = [
        ("Spec", code(spec_file)),
        ("App", code(spec.app)),
        ("Outcome", code("valid")),
        ("Nodes", str(spec.count)),
        ("Regions", ", ".join(code(region) for region in spec.regions)),
        ("Provider", code(spec.provider.name)),
        ("Secret vars", ", ".join(code(name) for name in secrets) if secrets else "none"),
    ]
    return "\n".join([_heading("validate", "valid"), _table(("Field", "Value"), rows)])


def plan_summary(report: PlanReport, *, mask: Mask = _same) -> str:
    """A plan: the release the spec means and the first steps deploy would take."""
    code = _coder(mask)
    outcome = "converged" if report.converged else "changes"
    rows = [
        ("App", code(report.app)),
        ("Region", code(report.region)),
        ("Release", code(report.release) + (" (new)" if report.new_release else "")),
        ("Serving", code(report.serving_release) if report.serving_release else "nothing"),
        ("Outcome", code(outcome)),
    ]
    parts = [_heading("plan", outcome), _table(("Field", "Value"), rows)]
    if report.steps:
        parts.append(_table(("#", "First steps"),
                            [(str(n), code(step)) for n, step in enumerate(report.steps, 1)]))
    if report.waiting_for:
        parts.append(_table(("#", "Waiting for"),
                            [(str(n), code(item))
                             for n, item in enumerate(report.waiting_for, 1)]))
    return "\n".join(parts)


def failure_summary(
    command: str, spec_file: str | None, exit_code: int, errors: Sequence[str],
    *, mask: Mask = _same,
) -> str:
    """A command that failed before it had a result to show (bad spec, lock held...)."""
    code = _coder(mask)
    rows = [("Outcome", code("failed")), ("Exit code", str(exit_code))]
    if spec_file is not None:
        rows.insert(0, ("Spec", code(spec_file)))
    return "\n".join([_heading(command, "failed"), _table(("Field", "Value"), rows),
                      *_errors(errors, mask)])


# --- markdown: every value in a code span, so nothing in it is a link or markup ---------


def _heading(command: str, outcome: str) -> str:
    return f"### phoenix {command}: {outcome}\n"


def _table(
    headers: Sequence[str], rows: Iterable[Sequence[str]], *, title: str | None = None
) -> str:
    lines = [f"**{title}**\n"] if title else []
    lines.append(_row(headers))
    lines.append(_row(["---"] * len(headers)))
    lines.extend(_row(row) for row in rows)
    return "\n".join(lines) + "\n"


def _row(cells: Sequence[str]) -> str:
    # A pipe ends a cell even inside a code span in a GFM table, so it is escaped.
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


def _code(text: str) -> str:
    """``text`` as one inline code span on one line (never a link, never markup)."""
    flat = " ".join(text.split())
    longest = max((len(run) for run in re.findall(r"`+", flat)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if flat.startswith("`") or flat.endswith("`") else ""
    return f"{fence}{pad}{flat}{pad}{fence}"


def _coder(mask: Mask) -> Callable[[str], str]:
    """``_code`` of the masked text: secrets go before anything reshapes the text (a
    multi-line secret would no longer match once its lines are joined)."""
    return lambda text: _code(mask(text))


def _errors(errors: Sequence[str], mask: Mask) -> list[str]:
    if not errors:
        return []
    text = "\n".join(mask(error) for error in errors)
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return [f"**Errors**\n\n{fence}text\n{text}\n{fence}\n"]


def _attempt_reason(reason: str, radius: str | None, cleaned_up: bool) -> str:
    text = f"{radius}-level failure: {reason}" if radius else reason
    return text if cleaned_up else f"{text} (not cleaned up: unreachable)"


def _seconds(value: float) -> str:
    return f"{value:.1f}s" if value < 60 else f"{int(value // 60)}m{value % 60:04.1f}s"
