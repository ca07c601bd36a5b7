"""The `memlint` command: reports, JSON output, exit codes, one-line errors, hw commands, terminal
output (NO_COLOR, width in pipes).

Exit codes are checked on the real console script in a subprocess; `memlint.cli.main(argv)`
(which returns the exit code) and click's CliRunner serve where in-process is enough.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from clitools import MEMLINT  # noqa: E402 - pytest puts tests/ on sys.path
from onnx import TensorProto, helper

from memlint import __version__
from memlint.api import lint
from memlint.cli import cli, main
from memlint.hardware import list_specs, resolve

SAMPLES = Path(__file__).resolve().parent.parent / "sample_models"
CNN, DECODER = SAMPLES / "small_cnn.onnx", SAMPLES / "gpt2_decoder_step.onnx"
GRAPH_ONLY = SAMPLES / "gpt2_small_graph_only.onnx"
# variables that change how rich or memlint write; each test sets what it needs
_SCRUBBED = ("NO_COLOR", "FORCE_COLOR", "COLUMNS", "LINES", "MEMLINT_DEBUG", "TTY_COMPATIBLE",
             "TTY_INTERACTIVE", "CLICOLOR_FORCE")  # fmt: skip


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED}
    env.update(extra)
    return env


def memlint(*args: str | os.PathLike[str], cwd: Path | None = None, **env: str):
    """Run the console script with stdout and stderr as pipes."""
    return subprocess.run(
        [*MEMLINT, *map(str, args)], check=False, capture_output=True, text=True, cwd=cwd,
        env=_env(**env), timeout=120,
    )  # fmt: skip


def memlint_in_pty(*args: str | os.PathLike[str], cwd: Path | None = None, **env: str) -> bytes:
    """Run the console script with a pseudo-terminal as stdout and stderr; returns what it wrote."""
    pty = pytest.importorskip("pty")
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [*MEMLINT, *map(str, args)], stdin=slave, stdout=slave, stderr=slave, cwd=cwd,
        env=_env(**env), close_fds=True,
    )  # fmt: skip
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    assert proc.wait(timeout=120) == 0
    return b"".join(chunks)


def tiny_matmul(tmp_path: Path) -> Path:
    """y = x @ W, x [batch, 1024] fp16, W [1024, 1024] fp16 external in a file that is absent."""
    weight = TensorProto(name="W", data_type=TensorProto.FLOAT16, dims=[1024, 1024])
    weight.data_location = TensorProto.EXTERNAL
    for key, value in (("location", "absent.bin"), ("offset", "0"), ("length", str(2 * 2**20))):
        entry = weight.external_data.add()
        entry.key, entry.value = key, value
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"])],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT16, ["batch", 1024])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT16, None)],
        initializer=[weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    path = tmp_path / "tiny.onnx"
    path.write_bytes(model.SerializeToString())
    return path


def top_node_names(path: Path, top: int = 5, **kwargs) -> list[str]:
    """The rows the text report's operator table shows (identical layers as one row, computed
    independently of the renderer: names equal but for their numbers, same op and cost)."""
    groups: dict[tuple, list] = {}
    for n in lint(path, **kwargs).nodes:
        if n.timing.predicted_latency_s > 0:
            key = (re.sub(r"\d+", "*", n.name), n.op_type, n.cost.flops, n.cost.bytes_moved)
            groups.setdefault(key, []).append(n)
    rows = [(-sum(n.timing.predicted_latency_s for n in members),
             members[0].name if len(members) == 1 else key[0])
            for key, members in groups.items()]
    return [label for _, label in sorted(rows)[:top]]


# --- the text report ----------------------------------------------------------------------------


def test_check_prints_the_text_report():
    result = memlint("small_cnn.onnx", "--hw", "a100", cwd=SAMPLES)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    out = result.stdout
    assert "memlint " + __version__ in out
    assert "NVIDIA A100 SXM4 80GB (nvidia-a100-sxm4-80gb)" in out
    for label in ("FLOPs", "bytes read", "bytes written", "intensity", "predicted latency",
                  "memory-bound", "coverage"):  # fmt: skip
        assert f"\n{label} " in out, label
    assert "16/16 nodes modelled (100.0%)" in out
    assert (
        "assumed dims (set to 1; bind them with --dim NAME=VALUE or --input-shape): batch_size"
        in out
    )
    assert "top 5 operators by predicted time (identical layers as one row)" in out


def test_check_is_the_default_command(capsys):
    assert main([str(CNN), "--hw", "a100"]) == 0
    bare = capsys.readouterr()
    assert main(["check", str(CNN), "--hw", "a100"]) == 0
    explicit = capsys.readouterr()
    assert bare.err == explicit.err == ""
    assert "predicted latency" in bare.out
    assert bare.out == explicit.out


def test_dims_from_the_command_line_reach_the_report(capsys):
    code = main([str(DECODER), "--dim", "batch_size=1", "--dim", "sequence_length=1",
                 "--dim", "past_sequence_length=255", "--format", "json"])  # fmt: skip
    assert code == 1  # a batch-1 decode step is memory-bound: warnings
    summary = json.loads(capsys.readouterr().out)["summary"]
    assert summary["dims"] == {"batch_size": 1, "past_sequence_length": 255, "sequence_length": 1}
    assert summary["assumed_dims"] == []
    assert summary["bytes_by_kind"]["kv_cache"] > 0


# --- the JSON report ----------------------------------------------------------------------------


def test_json_report_written_to_a_file(tmp_path, capsys):
    model = tiny_matmul(tmp_path)
    out = tmp_path / "r.json"
    code = main([str(model), "--hw", "a100", "--dim", "batch=1", "--format", "json",
                 "--output", str(out)])  # fmt: skip
    assert code == 1  # the GEMV is a low-intensity matmul (ML101, a warning)
    assert capsys.readouterr().out == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json", "tiny.onnx"]  # no temp files
    report = json.loads(out.read_text(encoding="utf-8"))

    assert report["schema_version"] == 1
    assert {"schema_version", "memlint_version", "model", "hardware", "conventions", "summary",
            "nodes", "findings"} <= set(report)  # fmt: skip
    assert "ML101" in [f["code"] for f in report["findings"]]
    summary = report["summary"]
    assert {"flops", "bytes_read", "bytes_written", "bytes_by_kind", "intensity",
            "predicted_latency_s", "memory_bound_fraction", "hardware", "dims", "assumed_dims",
            "coverage"} <= set(summary)  # fmt: skip
    # MatMul [1,1024] @ [1024,1024] fp16: 2*1024*1024 FLOPs; reads W 2 MiB + x 2 KiB; writes 2 KiB
    assert summary["flops"] == 2_097_152
    assert summary["bytes_read"] == 2_097_152 + 2048
    assert summary["bytes_written"] == 2048
    assert summary["bytes_by_kind"] == {"weights": 2_097_152, "activations": 4096, "kv_cache": 0}
    moved = 2_097_152 + 4096
    assert summary["intensity"] == pytest.approx(2_097_152 / moved)
    # memory-bound on A100 80GB (2039 GB/s): bytes / bandwidth, and one kernel launch (2.4 us)
    assert summary["predicted_latency_s"] == pytest.approx(moved / 2039e9 + 2.4e-6)
    assert summary["kernels"] == 1 and summary["kernels_fused"] == 1
    assert summary["memory_bound_fraction"] == 1.0
    assert summary["hardware"] == "nvidia-a100-sxm4-80gb"
    assert summary["dims"] == {"batch": 1}
    assert summary["assumed_dims"] == []
    coverage = summary["coverage"]
    assert {"nodes_total", "nodes_modelled", "unmodelled_ops"} <= set(coverage)
    assert (coverage["nodes_total"], coverage["nodes_modelled"], coverage["unmodelled_ops"]) == (
        1, 1, {})  # fmt: skip

    assert report["hardware"]["name"] == "nvidia-a100-sxm4-80gb"
    assert report["hardware"]["display_name"] == "NVIDIA A100 SXM4 80GB"
    (node,) = report["nodes"]
    assert {"name", "op_type", "domain", "flops", "bytes_read", "bytes_written", "intensity",
            "bound", "predicted_latency_s"} <= set(node)  # fmt: skip
    assert (node["name"], node["op_type"], node["domain"]) == ("MatMul_0", "MatMul", "")
    assert (node["flops"], node["bytes_read"], node["bytes_written"]) == (
        2_097_152, 2_099_200, 2048)  # fmt: skip
    assert node["bound"] == "memory"
    # the node's roofline time; the summary adds the launch of its one kernel
    assert node["predicted_latency_s"] == pytest.approx(summary["predicted_latency_s"] - 2.4e-6)


def test_json_report_of_gpt2_small_decode_step():
    # 163M fp32 parameters, data file absent; one token with 1023 cached: pure bandwidth
    result = memlint(GRAPH_ONLY, "--hw", "a100", "--dim", "past_sequence_length=1023",
                     "--format", "json")  # fmt: skip
    assert result.returncode == 1, result.stderr  # memory-bound decode: warnings
    assert {"ML101", "ML106"} <= {f["code"] for f in json.loads(result.stdout)["findings"]}
    report = json.loads(result.stdout)
    summary = report["summary"]
    matmuls = [n for n in report["nodes"] if n["op_type"] == "MatMul"]
    assert len(matmuls) == 73
    assert {n["bound"] for n in matmuls} == {"memory"}
    assert summary["bytes_by_kind"]["kv_cache"] > 0
    assert summary["bytes_by_kind"]["weights"] > 400e6  # ~495 MB of fp32 weights read
    assert summary["dims"]["past_sequence_length"] == 1023
    # a decoder's unbound batch and new-token dims take the decode-step scenario (batch 1, one
    # token), stated in the LLM section; the batch no flag gave is the scenario's default, marked
    # assumed with its source (the bound context says it is a decode step: one new token)
    assert summary["assumed_dims"] == ["batch_size"]
    assert summary["dim_sources"] == {"batch_size": "LLM default batch"}
    assert (summary["dims"]["batch_size"], summary["dims"]["sequence_length"]) == (1, 1)
    scenario = report["llm"]["serving"]["scenario"]
    assert (scenario["phase"], scenario["batch"], scenario["context"]) == ("decode", 1, 1023)
    assert "batch" in scenario["defaulted"]
    assert summary["memory_bound_fraction"] == 1.0
    assert summary["coverage"]["nodes_modelled"] == summary["coverage"]["nodes_total"] == 1192


# --- errors: exit 2, one line, no traceback ------------------------------------------------------


def _error_case(tmp_path: Path, case: str) -> list[str]:
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_text("<html><body>502 Bad Gateway</body></html>\n")
    bad_toml = tmp_path / "bad.toml"
    bad_toml.write_text("not = [valid\n")
    incomplete = tmp_path / "incomplete.toml"
    incomplete.write_text('[[device]]\nname = "my-gpu"\n')
    return {
        "missing-model": [tmp_path / "nope.onnx"],
        "corrupt-model": [corrupt],
        "unknown-hw": [CNN, "--hw", "a10O"],
        "dim-without-value": [CNN, "--dim", "batch_size"],
        "dim-not-a-number": [CNN, "--dim", "batch_size=x"],
        "unknown-dim": [CNN, "--dim", "batch=1"],
        "strict-dims": [CNN, "--strict-dims"],
        "unwritable-output": [CNN, "--output", tmp_path / "no_such_dir" / "r.txt"],
        "unwritable-json-output": [CNN, "--format", "json", "-o", tmp_path / "no_dir" / "r.json"],
        "malformed-hw-file": [CNN, "--hw-file", bad_toml],
        "incomplete-hw-file": [CNN, "--hw-file", incomplete],
        "hw-show-unknown": ["hw", "show", "nope"],
    }[case]


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("missing-model", "nope.onnx: no such file"),
        ("corrupt-model", "corrupt.onnx: not a readable ONNX model"),
        ("unknown-hw", "unknown hardware 'a10O'; did you mean a10, a100?"),
        ("dim-without-value", "--dim 'batch_size': expected NAME=VALUE"),
        ("dim-not-a-number", "--dim 'batch_size=x': 'x' is not a whole number"),
        ("unknown-dim", "--dim batch: no such dim in the model (its dims: batch_size)"),
        ("strict-dims", "--strict-dims: unbound dims batch_size; add --dim batch_size=N"),
        ("unwritable-output", "r.txt: cannot write the report"),
        ("unwritable-json-output", "r.json: cannot write the report"),
        ("malformed-hw-file", "malformed TOML in"),
        ("incomplete-hw-file", "device 'my-gpu': missing field"),
        ("hw-show-unknown", "unknown hardware 'nope'"),
    ],
)
def test_errors_exit_2_with_one_line(tmp_path, case, expected):
    result = memlint(*_error_case(tmp_path, case))
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("memlint: error: ")
    assert expected in lines[0]
    assert "Traceback" not in result.stderr


def test_main_returns_2_for_an_error(tmp_path, capsys):
    assert main([str(tmp_path / "nope.onnx")]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == f"memlint: error: {tmp_path / 'nope.onnx'}: no such file\n"


def test_debug_shows_the_traceback(tmp_path):
    result = memlint(tmp_path / "nope.onnx", "--debug")
    assert "Traceback (most recent call last)" in result.stderr
    assert "ModelLoadError" in result.stderr


def test_debug_keeps_exit_code_2(tmp_path):
    # exit 1 means "findings at or above --fail-on"; a tool failure must stay 2 under --debug
    result = memlint(tmp_path / "nope.onnx", "--debug")
    assert result.returncode == 2, result.stderr[-300:]


def test_an_output_path_that_is_a_directory_leaves_no_temporary_file(tmp_path):
    target = tmp_path / "reports"
    target.mkdir()
    result = memlint(CNN, "--format", "json", "--output", target)
    assert result.returncode == 2
    assert result.stderr.startswith(f"memlint: error: {target}: cannot write the report")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["reports"]


# --- hardware commands --------------------------------------------------------------------------


def test_hw_list_lists_a100_and_h100():
    result = memlint("hw", "list")
    assert result.returncode == 0, result.stderr
    for name in ("nvidia-a100-sxm4-80gb", "nvidia-h100-sxm5-80gb", "a100,", "h100,"):
        assert name in result.stdout


def test_hw_list_in_a_pipe_prints_every_device_name_whole():
    # the names are what users type after --hw; none may be cut short with an ellipsis
    out = memlint("hw", "list").stdout
    missing = [spec.name for spec in list_specs() if spec.name not in out]
    assert missing == []


def test_hw_show_h100():
    result = memlint("hw", "show", "h100")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.startswith("NVIDIA H100 SXM5 80GB (nvidia-h100-sxm5-80gb, gpu)")
    assert "3.35 TB/s" in out
    assert "memory_bandwidth" in out
    assert "NVIDIA H100 Tensor Core GPU datasheet" in out  # the sources are printed
    assert "990 TFLOP/s" in out  # dense fp16 tensor peak
    assert "nvidia.toml" in out


def test_hw_show_prints_each_source_whole():
    # every figure's source on its line, so `memlint hw show h100 | grep datasheet` shows it
    out = memlint("hw", "show", "h100").stdout
    sources = resolve("h100").sources
    assert sources
    missing = [key for key, source in sources.items() if source and source not in out]
    assert missing == []


def test_hw_show_in_process_with_click_runner():
    result = CliRunner().invoke(cli, ["hw", "show", "a100"])
    assert result.exit_code == 0, result.output
    assert "NVIDIA A100 SXM4 80GB" in result.output
    assert "2.04 TB/s" in result.output  # 2039 GB/s


def test_version_with_click_runner():
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0
    assert __version__ in result.output


def test_python_dash_m_memlint_is_the_command():
    result = subprocess.run([sys.executable, "-m", "memlint", "small_cnn.onnx", "--hw", "a100"],
                            cwd=SAMPLES, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert "small_cnn.onnx" in result.stdout
    bad = subprocess.run([sys.executable, "-m", "memlint", "--hw", "nope", "small_cnn.onnx"],
                         cwd=SAMPLES, capture_output=True, text=True, check=False)
    assert bad.returncode == 2
    assert bad.stderr.startswith("memlint: ") and "Traceback" not in bad.stderr


# --- terminal output ----------------------------------------------------------------------------


def test_no_color_in_a_pipe_writes_no_escape_sequences():
    result = memlint("small_cnn.onnx", cwd=SAMPLES, NO_COLOR="1")
    assert result.returncode == 0
    assert "\x1b" not in result.stdout and "\x1b" not in result.stderr


def test_no_color_on_a_terminal_writes_no_escape_sequences():
    out = memlint_in_pty("small_cnn.onnx", cwd=SAMPLES, NO_COLOR="1", COLUMNS="200",
                         TERM="xterm-256color")  # fmt: skip
    assert b"predicted latency" in out
    assert b"\x1b[" not in out


def test_a_pipe_gets_at_least_120_columns():
    # COLUMNS=80 as many CI runners set it; a pipe still gets 120 columns
    result = memlint("gpt2_decoder_step.onnx", "--fail-on", "never", cwd=SAMPLES, COLUMNS="80")
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    # the header (87 characters) and the coverage line stay on one line each
    assert lines[0].endswith(
        "gpt2_decoder_step.onnx on NVIDIA A100 SXM4 80GB (nvidia-a100-sxm4-80gb)"
    )
    assert any(line.startswith("coverage ") and line.rstrip().endswith("tensor shapes resolved")
               for line in lines)  # fmt: skip
    assert max(len(line) for line in lines) > 80
    names = top_node_names(DECODER, dims={"batch_size": 1, "sequence_length": 1,
                                          "past_sequence_length": 255})  # the default scenario
    assert len(names) == 5 and any(n.startswith("/transformer/h.*/") for n in names)
    assert [n for n in names if n not in result.stdout] == []


def test_short_node_names_are_not_wrapped_in_a_pipe():
    # small_cnn's names are at most 32 characters, next to the 18-character BatchNormalization
    result = memlint("small_cnn.onnx", cwd=SAMPLES)
    assert result.returncode == 0
    names = top_node_names(CNN)
    assert max(len(n) for n in names) <= 32
    assert [n for n in names if n not in result.stdout] == []


def test_the_readme_decode_step_fits_one_screen_and_names_every_finding():
    # The README's first command at 100 columns: one line per finding, identical layers as
    # one operator row; -v adds every fix and the evidence.
    args = ("gpt2_small_graph_only.onnx", "--hw", "a100", "--dim", "batch_size=1", "--dim",
            "sequence_length=1", "--dim", "past_sequence_length=1023", "--fail-on", "never")
    short = memlint_in_pty(*args, cwd=SAMPLES, NO_COLOR="1", COLUMNS="100", LINES="60")
    text = short.decode("utf-8", "replace").replace("\r\n", "\n")
    report = lint(SAMPLES / "gpt2_small_graph_only.onnx", hw="a100", dims={
        "batch_size": 1, "sequence_length": 1, "past_sequence_length": 1023})
    lines = text.splitlines()
    assert len(lines) <= 50, text
    finding_lines = [line for line in lines if re.match(r"ML\d{3} ", line)]
    assert len(finding_lines) == len(report.findings) >= 5
    for line, finding in zip(finding_lines, report.findings):
        assert line.split()[:2] == [finding.code, finding.name], line
    assert re.search(r"12x /transformer/h\.\*/mlp/c_fc/MatMul ", text)  # a row for 12 layers
    verbose = memlint(*args, "-v", cwd=SAMPLES).stdout
    assert verbose.count("  fix: ") >= sum(len(f.fixes) for f in report.findings)


def test_combined_saving_counts_each_node_once():
    import dataclasses

    from memlint.findings import Finding, Fix, Severity

    report = lint(CNN, hw="a100")
    slow = max(report.nodes, key=lambda n: n.timing.predicted_latency_s)
    t = slow.timing.predicted_latency_s

    def finding(code, nodes, saving):  # noqa: ANN001, ANN202
        return Finding(code, "x", Severity.WARNING, "m", nodes=nodes,
                       fixes=(Fix("f", saving_s=saving),))

    # two fixes of the same node: the larger counts (0.5 t), not both (0.8 t); a finding about
    # the graph adds its own (0.1 t): 0.6 t together
    findings = (finding("XA001", (slow.name,), 0.5 * t), finding("XA002", (slow.name,), 0.3 * t),
                finding("XA003", (), 0.1 * t))
    combined = dataclasses.replace(report, findings=findings).combined_saving_s
    assert combined == pytest.approx(0.6 * t)
    assert dataclasses.replace(report, findings=()).combined_saving_s == 0.0


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_a_reader_that_stops_early_keeps_the_exit_code(fmt):
    """`memlint M | head -1`: no traceback, no broken-pipe noise, and the exit code is the
    gate's (0 with --fail-on never, 1 with findings at the default gate), not 1 for the pipe.
    The pipe is shrunk to one page, so the report (5 kB of text) cannot fit in it: memlint is
    still writing when the reader stops."""
    fcntl = pytest.importorskip("fcntl")
    for gate, expected in (("never", 0), ("warning", 1)):
        run = subprocess.Popen(
            [*MEMLINT, str(SAMPLES / "gpt2_decoder_step.onnx"), "--format", fmt,
             "--fail-on", gate],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        fcntl.fcntl(run.stdout.fileno(), getattr(fcntl, "F_SETPIPE_SZ", 1031), 4096)
        run.stdout.read(20)
        run.stdout.close()  # the reader stops
        err = run.stderr.read()
        assert run.wait(timeout=120) == expected, err
        assert err == b""
