"""`phoenix image import|list` on the local provider: content-addressed, listed with
digest and creation time; the same directory imports to the same image."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from phoenix.cli import app

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "hello"


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout


def test_import_then_list_shows_digest_and_creation_time(tmp_path: Path) -> None:
    shutil.copytree(EXAMPLE, tmp_path / "hello")
    spec = str(tmp_path / "hello" / "phoenix.yaml")
    text = Path(spec).read_text().replace(
        "state_dir: .phoenix/local", f"state_dir: {tmp_path / 'state'}"
    )
    Path(spec).write_text(text)
    image_dir = str(tmp_path / "hello" / "image")

    code, out = run("-o", "json", "image", "import", image_dir, spec, "--name", "hello")
    assert code == 0, out
    first = json.loads(out)
    assert first["id"] == f"img-{first['digest'][:12]}"

    code, out = run("-o", "json", "image", "import", image_dir, spec, "--name", "hello")
    assert json.loads(out)["id"] == first["id"]  # same content, same image

    (Path(image_dir) / "server.py").write_text(
        (Path(image_dir) / "server.py").read_text() + "\n# changed\n"
    )
    code, out = run("-o", "json", "image", "import", image_dir, spec, "--name", "hello")
    second = json.loads(out)
    assert second["id"] != first["id"]

    code, out = run("-o", "json", "image", "list", spec)
    listed = json.loads(out)["images"]
    assert {i["id"] for i in listed} == {first["id"], second["id"]}
    assert all(i["digest"] and i["created_at"] for i in listed)

    code, out = run("image", "list", spec)
    assert code == 0 and "DIGEST" in out and first["digest"] in out


def test_import_is_refused_by_a_provider_that_cannot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the memory cloud keeps its state file under the cwd
    spec = Path(__file__).resolve().parents[2] / "examples" / "memory-hello" / "phoenix.yaml"
    result = CliRunner().invoke(app, ["image", "import", str(tmp_path), str(spec)])
    assert result.exit_code == 2
    assert "cannot import a directory" in result.output


def test_prune_on_the_local_provider_keeps_the_newest_and_says_why(tmp_path: Path) -> None:
    """No deploy here (no processes): three imports of the example's image directory,
    the spec's image (`path: image`) picks from them; prune keeps the newest."""
    shutil.copytree(EXAMPLE, tmp_path / "hello")
    spec = tmp_path / "hello" / "phoenix.yaml"
    spec.write_text(spec.read_text().replace(
        "state_dir: .phoenix/local", f"state_dir: {tmp_path / 'state'}"))
    server = tmp_path / "hello" / "image" / "server.py"
    ids = []
    for n in range(3):
        server.write_text(server.read_text() + f"\n# bake {n}\n")
        code, out = run("-o", "json", "image", "import", str(server.parent), str(spec))
        assert code == 0, out
        ids.append(json.loads(out)["id"])
    code, out = run("-o", "json", "image", "list", str(spec))
    listed = json.loads(out)["images"]
    assert [i["id"] for i in listed] == ids[::-1]  # newest first
    assert all(i["golden"] and i["used_by"] == [] and i["age_seconds"] >= 0 for i in listed)

    refused = CliRunner().invoke(app, ["image", "prune", "--keep", "1", str(spec)])
    assert refused.exit_code != 0 and "--yes" in refused.output  # no TTY to ask on

    code, out = run("-o", "json", "image", "prune", "--keep", "1", "--dry-run", str(spec))
    assert code == 0, out
    planned = json.loads(out)
    # The two regions of the local provider share this machine's images.
    assert {i["id"] for i in planned["would_delete"]} == set(ids[:2])
    assert len(json.loads(run("-o", "json", "image", "list", str(spec))[1])["images"]) == 3

    code, out = run("image", "prune", "--keep", "1", "--yes", str(spec))
    assert code == 0, out
    assert "deleted 2 of" in out and "one of the 1 newest" in out
    code, out = run("-o", "json", "image", "list", str(spec))
    assert [i["id"] for i in json.loads(out)["images"]] == [ids[2]]
    assert not list((tmp_path / "state" / "images").glob(".deleting-*"))
