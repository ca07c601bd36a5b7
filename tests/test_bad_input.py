"""Bad input through the real command line: exit code 2, one line on stderr, no traceback, no
hang, and nothing written half.

Each case runs `python -m memlint.cli` in a subprocess with a timeout, as a user or a CI job
runs it. Permission cases need a user whose permissions are enforced: as root (containers) the
kernel lets every read and write through, so they are skipped there (os.access says so).
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from memlint.errors import ModelLoadError
from memlint.runner import LintRequest, lint_model

REPO = Path(__file__).resolve().parent.parent
SMALL_CNN = REPO / "sample_models" / "small_cnn.onnx"
TIMEOUT_S = 60


def memlint(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "memlint.cli", *map(str, args)],
        capture_output=True, text=True, timeout=TIMEOUT_S, cwd=cwd, check=False,
    )


def assert_one_error_line(done: subprocess.CompletedProcess, *fragments: str) -> str:
    """Exit code 2 and exactly one stderr line, `memlint: error: ...`, holding `fragments`."""
    lines = done.stderr.splitlines()
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr and "internal error" not in done.stderr, done.stderr
    assert lines[0].startswith("memlint: error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def leftovers(folder: Path) -> list[str]:
    """Temporary files a failed atomic write could leave behind."""
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


# -- the model argument -----------------------------------------------------------------------


def test_folder_without_any_model(tmp_path: Path) -> None:
    (tmp_path / "export" / "tokenizer").mkdir(parents=True)
    (tmp_path / "export" / "config.json").write_text("{}\n")
    (tmp_path / "export" / "tokenizer" / "vocab.txt").write_text("a\n")
    done = memlint(tmp_path / "export")
    assert_one_error_line(done, "export: a folder with no .onnx file in it")
    assert done.stdout == ""


def test_html_page_saved_as_a_model(tmp_path: Path) -> None:
    page = tmp_path / "model.onnx"
    page.write_text("<!DOCTYPE html>\n<html><head><title>Sign in</title></head></html>\n")
    assert_one_error_line(memlint(page), "model.onnx: not a readable ONNX model", "HTML")


def test_git_lfs_pointer_saved_as_a_model(tmp_path: Path) -> None:
    pointer = tmp_path / "model.onnx"
    pointer.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:00\nsize 9\n")
    assert_one_error_line(memlint(pointer), "Git LFS pointer", "git lfs pull")


def test_empty_file(tmp_path: Path) -> None:
    empty = tmp_path / "model.onnx"
    empty.write_bytes(b"")
    assert_one_error_line(memlint(empty), "model.onnx: empty file, not an ONNX model")


def test_truncated_model(tmp_path: Path) -> None:
    cut = tmp_path / "model.onnx"
    cut.write_bytes(SMALL_CNN.read_bytes()[:1000])
    assert_one_error_line(memlint(cut), "model.onnx: not a readable ONNX model")


def test_file_larger_than_any_protobuf_is_not_read(tmp_path: Path) -> None:
    """A 3 GiB file (sparse: no disk used) is refused from its size, not parsed into memory."""
    big = tmp_path / "model.onnx"
    with open(big, "wb") as handle:
        handle.truncate(3 * 2**30)
    assert_one_error_line(memlint(big), "3.0 GiB, larger than any protobuf can be")


def test_missing_file(tmp_path: Path) -> None:
    assert_one_error_line(memlint(tmp_path / "nope.onnx"), "nope.onnx: no such file")


def test_file_without_read_permission(tmp_path: Path) -> None:
    locked = tmp_path / "model.onnx"
    locked.write_bytes(SMALL_CNN.read_bytes())
    locked.chmod(0)
    try:
        if os.access(locked, os.R_OK):
            pytest.skip("running as a user who can read a file with mode 000 (root)")
        assert_one_error_line(memlint(locked), "model.onnx: permission denied")
    finally:
        locked.chmod(0o644)


def test_folder_without_search_permission(tmp_path: Path) -> None:
    folder = tmp_path / "locked"
    folder.mkdir()
    (folder / "model.onnx").write_bytes(SMALL_CNN.read_bytes())
    folder.chmod(0o600)  # readable listing, but no x: its files cannot be opened
    try:
        if os.access(folder / "model.onnx", os.R_OK):
            pytest.skip("running as a user who can open files in a folder without x (root)")
        done = memlint(folder / "model.onnx")
        assert_one_error_line(done)
    finally:
        folder.chmod(0o755)


def test_unreadable_file_in_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The permission check itself, also where root would read the file anyway."""
    model = tmp_path / "model.onnx"
    model.write_bytes(SMALL_CNN.read_bytes())
    monkeypatch.setattr(os, "access", lambda *args, **kwargs: False)
    with pytest.raises(ModelLoadError, match=r"model.onnx: permission denied$"):
        lint_model(model, LintRequest(isolated=True))


def test_one_bad_model_among_good_ones(tmp_path: Path) -> None:
    """Many models: the bad one fails alone (one stderr line), the others are reported."""
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"")
    done = memlint(SMALL_CNN, bad, "--isolated", "--fail-on", "never")
    assert_one_error_line(done, "bad.onnx: empty file")
    assert "small_cnn" in done.stdout


# -- the --output path ------------------------------------------------------------------------


def test_output_folder_does_not_exist(tmp_path: Path) -> None:
    target = tmp_path / "missing" / "deeper" / "report.json"
    done = memlint(SMALL_CNN, "--isolated", "--format", "json", "-o", target)
    assert_one_error_line(done, "report.json: cannot write the report")
    assert not (tmp_path / "missing").exists()
    assert done.stdout == ""


def test_output_path_is_a_folder(tmp_path: Path) -> None:
    """The report is written to a temporary file and moved into place: when the move fails the
    temporary file is removed and what was at the path is untouched."""
    target = tmp_path / "report.json"
    target.mkdir()
    (target / "keep.txt").write_text("mine\n")
    done = memlint(SMALL_CNN, "--isolated", "--format", "json", "-o", target)
    assert_one_error_line(done, "report.json: cannot write the report")
    assert leftovers(tmp_path) == []
    assert sorted(p.name for p in target.iterdir()) == ["keep.txt"]
    assert (target / "keep.txt").read_text() == "mine\n"


def test_output_folder_without_write_permission(tmp_path: Path) -> None:
    folder = tmp_path / "readonly"
    folder.mkdir()
    existing = folder / "report.md"
    existing.write_text("old report\n")
    folder.chmod(0o555)
    try:
        if os.access(folder, os.W_OK):
            pytest.skip("running as a user who can write into a folder with mode 555 (root)")
        done = memlint(SMALL_CNN, "--isolated", "--format", "markdown", "-o", existing)
        assert_one_error_line(done, "report.md: cannot write the report")
        assert existing.read_text() == "old report\n"
        assert leftovers(folder) == []
    finally:
        folder.chmod(0o755)


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc")
def test_output_on_a_filesystem_that_refuses_files() -> None:
    """/proc refuses new files even for root: the unwritable path every user can test."""
    done = memlint(SMALL_CNN, "--isolated", "--format", "sarif", "-o", "/proc/memlint-report.sarif")
    assert_one_error_line(done, "/proc/memlint-report.sarif: cannot write the report")


def test_a_new_report_file_gets_the_umask_mode_and_a_replaced_one_keeps_its_own(tmp_path):
    from memlint.cli import main

    new, existing = tmp_path / "new.json", tmp_path / "existing.json"
    existing.write_text("old\n")
    existing.chmod(0o640)
    previous = os.umask(0o022)
    try:
        assert main([str(SMALL_CNN), "--isolated", "--format", "json", "-o", str(new)]) == 0
        assert main([str(SMALL_CNN), "--isolated", "--format", "json", "-o", str(existing)]) == 0
    finally:
        os.umask(previous)
    assert new.stat().st_mode & 0o777 == 0o644
    assert existing.stat().st_mode & 0o777 == 0o640 and existing.read_text() != "old\n"


def _special_files(tmp_path: Path) -> dict[str, Path]:
    """A FIFO, a symbolic link and (where this user may make one) a character device."""
    fifo, link, target = tmp_path / "fifo", tmp_path / "link", tmp_path / "target.txt"
    os.mkfifo(fifo)
    target.write_text("theirs\n")
    link.symlink_to(target)
    found = {"a FIFO": fifo, "a symbolic link": link}
    device = tmp_path / "null"
    try:
        os.mknod(device, 0o600 | stat.S_IFCHR, os.makedev(1, 3))  # like /dev/null
        found["a character device"] = device
    except OSError:
        pass
    return found


def test_only_a_regular_file_is_replaced(tmp_path: Path) -> None:
    for kind, path in _special_files(tmp_path).items():
        before = os.lstat(path)
        done = memlint(SMALL_CNN, "--isolated", "--format", "json", "-o", path)
        assert_one_error_line(done, f"{path.name}: cannot write the report ({kind} is there")
        after = os.lstat(path)
        assert (after.st_mode, after.st_ino) == (before.st_mode, before.st_ino), kind
    assert (tmp_path / "target.txt").read_text() == "theirs\n"
    assert leftovers(tmp_path) == []


def test_unwritable_baseline_output(tmp_path: Path) -> None:
    done = memlint(SMALL_CNN, "--isolated", "--format", "json", "-o", tmp_path / "r.json",
                   "--write-baseline", tmp_path / "no" / "baseline.json")
    assert_one_error_line(done, "baseline.json: cannot write the report")
    assert leftovers(tmp_path) == []


# -- flags and side files ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--dim", "x=" + "9" * 40], "larger than any dim"),
        (["--dim", "x"], "expected NAME=VALUE"),
        (["--input-shape", "input=1,a"], "is not a whole number"),
        (["--hw", "no-such-gpu"], "unknown hardware 'no-such-gpu'"),
        (["--config", "/nonexistent/memlint.toml"], "cannot read the config file"),
        (["--hw-file", "/nonexistent/gpus.toml"], "hardware file not found"),
    ],
    ids=["huge-dim", "dim-syntax", "shape-syntax", "unknown-hw", "missing-config",
         "missing-hw-file"],
)
def test_bad_flags(args: list[str], fragment: str) -> None:
    assert_one_error_line(memlint(SMALL_CNN, *args), fragment)


def test_broken_config_file_found_beside_the_model(tmp_path: Path) -> None:
    model = tmp_path / "model.onnx"
    model.write_bytes(SMALL_CNN.read_bytes())
    (tmp_path / "pyproject.toml").write_text("[tool]\nmemlint = 'on'\n")
    assert_one_error_line(memlint(model), "pyproject.toml: [tool.memlint] must be a table")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
@pytest.mark.parametrize("flag", ["--config", "--hw-file", None], ids=["config", "hw", "model"])
def test_named_pipe_instead_of_a_file(tmp_path: Path, flag: str | None) -> None:
    """Opening a FIFO for reading waits for a writer: it must be refused, not hang."""
    pipe = tmp_path / ("model.onnx" if flag is None else "settings.toml")
    os.mkfifo(pipe)
    done = memlint(pipe) if flag is None else memlint(SMALL_CNN, flag, pipe)
    assert_one_error_line(done, "settings.toml" if flag else "model.onnx")


def test_broken_hardware_file(tmp_path: Path) -> None:
    spec = tmp_path / "gpus.toml"
    spec.write_bytes(b"device = " + b"[" * 5000 + b"]" * 5000 + b"\n")
    assert_one_error_line(memlint(SMALL_CNN, "--hw-file", spec), "gpus.toml", "nested too deeply")


def test_a_negative_input_size_is_refused_and_minus_one_is_unknown(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    def model(dim: int) -> Path:
        graph = helper.make_graph(
            [helper.make_node("Relu", ["x"], ["y"])], "g",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, dim])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        )
        path = tmp_path / f"dim{dim}.onnx"
        onnx.save(helper.make_model(graph), path)
        return path

    done = memlint(model(-5), "--isolated")
    assert_one_error_line(done, "input x axis 1 has size -5, which no tensor can have",
                          "--input-shape x=")
    unknown = memlint(model(-1), "--isolated", "--fail-on", "never")  # exporters' "unknown"
    assert unknown.returncode == 0, unknown.stderr
    assert "x[1]" in unknown.stdout  # assumed 1, and the report says so


# -- failures of the libraries memlint drives: their logs kept, memlint's one line -----------


@pytest.fixture(scope="module")
def saved_program(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch = pytest.importorskip("torch")

    class Linear(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = torch.nn.Linear(16, 16)

        def forward(self, x):
            return self.fc(x)

    path = tmp_path_factory.mktemp("pt2") / "good.pt2"
    torch.export.save(torch.export.export(Linear(), (torch.randn(2, 16),)), path)
    return path


def test_a_corrupt_pt2_is_one_line_without_torchs_traceback(tmp_path: Path, saved_program):
    garbage = tmp_path / "garbage.pt2"
    garbage.write_bytes(bytes(range(256)) * 12)
    # torch logs a traceback ("Ran into the following error when deserializing") for both;
    # memlint keeps it and quotes its error instead of "check the warnings above"
    done = memlint(garbage)
    assert_one_error_line(done, "garbage.pt2: not a readable torch.export program",
                          "PytorchStreamReader failed reading zip archive")
    data = saved_program.read_bytes()
    for name, cut in (("head.pt2", data[:2000]), ("tail.pt2", data[:-100])):
        (tmp_path / name).write_bytes(cut)
        done = memlint(tmp_path / name)
        line = assert_one_error_line(done, f"{name}: not a readable torch.export program")
        assert "warnings above" not in line and "W1" not in done.stderr
    assert memlint(saved_program, "--fail-on", "never").returncode == 0


def test_a_torch_capture_failure_is_one_line(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    package = tmp_path / "badmods"
    package.mkdir()
    (package / "__init__.py").write_text(
        "import torch\n\n\n"
        "class Branchy(torch.nn.Module):  # data-dependent control flow: no capture can take it\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.fc = torch.nn.Linear(8, 8)\n\n"
        "    def forward(self, x):\n"
        "        if x.sum() > 0:\n"
        "            return self.fc(x)\n"
        "        return x\n\n\n"
        "def make():\n    return Branchy()\n\n\n"
        "def inputs():\n    return (torch.randn(2, 8),)\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "memlint.cli", "badmods:make", "--example-inputs",
         "badmods:inputs"], capture_output=True, text=True, timeout=TIMEOUT_S, cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(tmp_path)}, check=False,
    )
    # torch's symbolic-shapes logger warns before export fails ("Unable to find user code"):
    # kept, so the only line is memlint's, naming both captures that failed
    assert_one_error_line(done, "badmods:make: torch.export failed",
                          "the torch.fx.symbolic_trace fallback failed too")


def test_a_confirm_runtime_error_prints_no_onnxruntime_log(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    # a Conv whose input channels come from a dim: bound to 1 against a 3-channel kernel, it
    # lints, and onnxruntime refuses it at run time (logging a coloured [E:onnxruntime:] line)
    weight = numpy_helper.from_array(np.ones((4, 3, 3, 3), np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"], name="conv")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, "c", 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, tmp_path / "conv.onnx")
    done = memlint(tmp_path / "conv.onnx", "--dim", "c=1", "--confirm", "--hw", "cpu",
                   "--isolated")
    assert "onnxruntime:" not in done.stderr and "\x1b[" not in done.stderr, done.stderr
    errors = [line for line in done.stderr.splitlines() if "error" in line]
    assert done.returncode == 2 and len(errors) == 1, done.stderr
    assert errors[0].startswith("memlint: error: onnxruntime failed to run the model")
    assert "Input channels C is not equal to kernel channels" in errors[0]
    # what else stderr holds is memlint's announcement of the run, and no blank line
    assert [line for line in done.stderr.splitlines() if line not in errors] == [
        ("memlint: measuring with onnxruntime CPUExecutionProvider (cpu) against the "
         "generic-cpu spec")]
