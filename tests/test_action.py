"""The GitHub Action (action.yml, .github/actions/memlint/lint-changed-models.sh): its shell step
run here as GitHub runs it, on a temporary git repository whose "pull request" changes models,
with a fake GITHUB_* environment and a fake `gh` that records what it is asked."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / ".github" / "actions" / "memlint" / "lint-changed-models.sh"
SAMPLES = REPO / "sample_models"
MARKER = "<!-- memlint-action -->"
# The fake gh: records each call; answers the comment listing with $GH_EXISTING (an id or "").
FAKE_GH = """#!/usr/bin/env bash
printf '%s\\n' "$*" >> "$GH_LOG"
for arg in "$@"; do
  case "$arg" in body=@*) cp "${arg#body=@}" "$GH_LOG.body" ;; esac
done
case "$*" in *--paginate*) [ -n "${GH_EXISTING:-}" ] && echo "$GH_EXISTING" ;; esac
exit 0
"""

pytestmark = pytest.mark.skipif(shutil.which("git") is None or shutil.which("bash") is None,
                                reason="needs git and bash")


def git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}
    done = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, env=env,
                          check=True)
    return done.stdout.strip()


@pytest.fixture
def pull_request(tmp_path: Path) -> dict:
    """A repository whose base commit has models and a gate config, and a head commit (the
    pull request) that adds a decoder, deletes a model, and tries to loosen the gate."""
    repo = tmp_path / "repo"
    (repo / "models").mkdir(parents=True)
    git(repo, "init", "-q", "-b", "main")
    shutil.copy(SAMPLES / "small_cnn.onnx", repo / "models" / "cnn.onnx")
    shutil.copy(SAMPLES / "small_cnn.onnx", repo / "models" / "old.onnx")
    (repo / "memlint.toml").write_text('fail-on = "warning"\n')
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "base")
    base = git(repo, "rev-parse", "HEAD")
    shutil.copy(SAMPLES / "gpt2_decoder_step.onnx", repo / "models" / "gpt2.onnx")
    (repo / "models" / "old.onnx").unlink()
    (repo / "README.md").write_text("not a model\n")
    (repo / "memlint.toml").write_text('fail-on = "never"\n')  # the PR edits the gate ...
    (repo / "models" / "memlint.toml").write_text('fail-on = "never"\n')  # ... and adds one
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "pull request")
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"pull_request": {"number": 7, "base": {"sha": base}}}))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "gh").write_text(FAKE_GH)
    (bin_dir / "gh").chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "GITHUB_EVENT_PATH": str(event),
        "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md"),
        "GITHUB_OUTPUT": str(tmp_path / "outputs.txt"),
        "GITHUB_REPOSITORY": "owner/repo",
        "RUNNER_TEMP": str(tmp_path / "runner"),
        "GH_LOG": str(tmp_path / "gh.log"),
        "GH_TOKEN": "fake",
        "MEMLINT_CMD": f"{sys.executable} -m memlint.cli",
        "MEMLINT_ARGS": "--dim batch_size=1 --dim sequence_length=1 "
                        "--dim past_sequence_length=128",
        "MEMLINT_COMMENT": "true",
    }
    (tmp_path / "runner").mkdir()
    return {"repo": repo, "env": env, "tmp": tmp_path, "base": base}


def run_action(pr: dict, **env: str) -> tuple[subprocess.CompletedProcess, dict[str, str]]:
    done = subprocess.run(["bash", str(SCRIPT)], cwd=pr["repo"], env={**pr["env"], **env},
                          capture_output=True, text=True, timeout=300, check=False)
    text = (pr["tmp"] / "outputs.txt").read_text() if (pr["tmp"] / "outputs.txt").exists() else ""
    outputs = dict(re.findall(r"^([a-z-]+)=(.*)$", text, re.MULTILINE))
    block = re.search(r"^models<<MEMLINT_EOF\n(.*?)MEMLINT_EOF$", text, re.MULTILINE | re.DOTALL)
    outputs["models"] = block.group(1) if block else ""
    return done, outputs


def test_the_action_lints_the_changed_models_with_the_base_branch_gate(pull_request):
    done, outputs = run_action(pull_request)
    assert done.returncode == 0, done.stderr  # the verdict is an output; the last step fails
    assert outputs["models"] == "models/gpt2.onnx\n"  # not the unchanged, deleted or non-models
    assert outputs["count"] == "1"
    # the decode step has warnings; the pull request's fail-on = "never" (edited at the root,
    # added beside the model) does not count: the gate is the base branch's memlint.toml
    assert outputs["exit-code"] == "1"
    summary = (pull_request["tmp"] / "summary.md").read_text()
    assert summary.startswith(MARKER + "\n## memlint: 1 changed model(s): findings at or above")
    assert "### memlint: gpt2.onnx on" in summary.replace("\\", "")  # the Markdown report
    assert "ML101" in summary and "old.onnx" not in summary and "cnn.onnx" not in summary
    assert "memlint.toml" in summary  # the report names the (base) config applied
    sarif = json.loads(Path(outputs["sarif"]).read_text())
    assert sarif["version"] == "2.1.0" and sarif["runs"][0]["results"]
    assert Path(outputs["markdown"]).read_text() in summary
    # annotations on the changed file, as workflow commands on stdout
    assert "::warning file=models/gpt2.onnx" in done.stdout
    # the comment: none with the marker yet, so one is posted, holding the summary's report
    calls = (pull_request["tmp"] / "gh.log").read_text().splitlines()
    assert calls[0].startswith("api --paginate repos/owner/repo/issues/7/comments")
    assert calls[1].startswith("api -X POST repos/owner/repo/issues/7/comments -F body=@")
    assert (pull_request["tmp"] / "gh.log.body").read_text() == summary


def test_a_later_push_updates_the_comment_and_no_change_passes(pull_request):
    done, _ = run_action(pull_request, GH_EXISTING="4242")
    assert done.returncode == 0, done.stderr
    calls = (pull_request["tmp"] / "gh.log").read_text().splitlines()
    assert calls[-1].startswith("api -X PATCH repos/owner/repo/issues/comments/4242 -F body=@")
    # compared with its own head: nothing changed, nothing linted, the gate passes
    (pull_request["tmp"] / "outputs.txt").unlink()
    done, outputs = run_action(pull_request, MEMLINT_BASE="HEAD", MEMLINT_COMMENT="false")
    assert done.returncode == 0, done.stderr
    assert (outputs["count"], outputs["exit-code"], outputs["sarif"]) == ("0", "0", "")
    assert "no model changed" in (pull_request["tmp"] / "summary.md").read_text()


def test_a_model_memlint_cannot_read_is_exit_2_with_its_line_in_the_summary(pull_request):
    repo = pull_request["repo"]
    (repo / "models" / "broken.onnx").write_text("<html>not a model</html>\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "a broken model")
    done, outputs = run_action(pull_request, MEMLINT_COMMENT="false")
    assert done.returncode == 0, done.stderr
    assert outputs["models"].splitlines() == ["models/broken.onnx", "models/gpt2.onnx"]
    assert outputs["exit-code"] == "2"
    summary = (pull_request["tmp"] / "summary.md").read_text()
    assert "memlint could not lint every model" in summary
    # memlint's error line, from a file the pull request names: an indented code block
    (line,) = [s for s in summary.splitlines() if s.lstrip().startswith("memlint: error")]
    assert line.startswith("    memlint: error: models/broken.onnx: not a readable ONNX model")
    assert "### memlint: gpt2.onnx on" in summary.replace("\\", "")  # the rest linted


def test_action_yml_runs_the_script_with_every_input_it_reads():
    yaml = pytest.importorskip("yaml")
    action = yaml.safe_load((REPO / "action.yml").read_text())
    assert action["runs"]["using"] == "composite"
    steps = {step.get("id") or step.get("name") or step.get("uses"): step
             for step in action["runs"]["steps"]}
    lint = steps["lint"]
    assert ".github/actions/memlint/lint-changed-models.sh" in lint["run"]
    assert "${{" not in lint["run"]  # inputs reach the script through env, never the command
    read = set(re.findall(r"\$\{?(MEMLINT_[A-Z_]+)", SCRIPT.read_text())) - {"MEMLINT_CMD"}
    assert read <= set(lint["env"]), read - set(lint["env"])
    for name in lint["env"].values():
        match = re.fullmatch(r"\$\{\{ inputs\.([a-z-]+) \}\}", name)
        assert match is None or match.group(1) in action["inputs"], name
    upload = steps["Upload SARIF"]
    assert upload["uses"].startswith("github/codeql-action/upload-sarif@")
    assert upload["with"]["sarif_file"] == "${{ steps.lint.outputs.sarif }}"
    assert "steps.lint.outputs.exit-code" in steps["Gate"]["env"]["MEMLINT_EXIT"]
    assert set(action["outputs"]) == {"exit-code", "models", "markdown", "sarif"}
