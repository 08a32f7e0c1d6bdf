"""The ``phoenix`` command line: parse arguments, call the library, render the result.

This is the only package that knows about a terminal (typer for parsing, rich for the
progress display); every decision is made by ``phoenix.api``. What shapes it:

* **stdout is for results.** Text reports or, with ``--output json``, exactly one JSON
  document (the result's fields plus ``exit_code``, or ``{"error": ...}``). Logs,
  progress and error text go to stderr, so ``phoenix --output json deploy | jq`` works.
* **The exit code is the contract with CI** (``phoenix.errors.ExitCode``): 0 converged,
  1 failed and rolled back, 2 bad input, 3 needs a person, 4 locked, 130 interrupted.
  A ``PhoenixError`` never shows a Python traceback: it is a message for a person.
* **Secrets never reach the terminal.** Once a spec is loaded, everything printed,
  including error messages and JSON, passes through ``secret_mask.mask`` with the spec's
  secret var values (``phoenix render --show-secrets`` is the one deliberate exception).
* **In a GitHub Actions step** (``GITHUB_ACTIONS=true``) a failure is also printed as
  ``::error`` annotations (at the spec's or template's line), and the outcome of
  validate, plan and the commands that change the cloud is appended to the job summary
  (``phoenix.github`` renders both).

Global options (``--output``, ``--log-format``, ``--log-level``) go before the command
(``phoenix --output json deploy``) and are also accepted after it (``phoenix deploy
phoenix.yaml --output json``); the one after the command wins.

The package, one module per job: ``application`` (the typer app, its global options,
``main``), ``options`` (the options the commands share), ``session`` (one command's
output and exit code), ``terminal`` (confirmation and progress), ``text`` (results as
text), and the commands: ``commands_inspect``, ``commands_deploy``, ``commands_ops`` and
``watch_command``.
"""

from phoenix.cli.application import app, main

__all__ = ["app", "main"]
