"""Shared pytest configuration for memlint's tests."""

from __future__ import annotations

import warnings

import pytest

# The small transformer configs of `small_exports` (layers, hidden, heads, FFN width, vocab).
SMALL_L, SMALL_D, SMALL_H, SMALL_I, SMALL_V = 2, 64, 4, 128, 500
SMALL_KV_HEADS = 2  # the Llama's grouped-query attention


def pytest_addoption(parser) -> None:  # noqa: ANN001 - pytest's Parser
    parser.addoption(
        "--update-golden",
        action="store_true",
        default=False,
        help="Rewrite the golden reports in tests/golden/ from the current output instead of "
        "comparing against them (review the diff before committing).",
    )


@pytest.fixture(autouse=True)
def _no_user_hardware_specs(tmp_path_factory, monkeypatch) -> None:  # noqa: ANN001
    """A developer's saved specs (memlint hw calibrate --save) never reach the tests."""
    monkeypatch.setenv("MEMLINT_HARDWARE_DIR", str(tmp_path_factory.getbasetemp() / "no-user-hw"))


@pytest.fixture(scope="session")
def small_exports(tmp_path_factory):
    """model.onnx paths of tiny random configs (no hub) exported once per run by the real tools:
    {"gpt2", "llama"}: Optimum "text-generation-with-past"; "bert": Optimum
    "feature-extraction"; "bert_ort" and "gpt2_ort": those exports through onnxruntime's
    transformer optimizer (opt_level 1, CPU)."""
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("optimum.exporters.onnx")
    optimizer = pytest.importorskip("onnxruntime.transformers.optimizer")
    import torch
    from clitools import optimum_export

    root = tmp_path_factory.mktemp("small-exports")
    torch.manual_seed(0)
    L, D, H, I, V = SMALL_L, SMALL_D, SMALL_H, SMALL_I, SMALL_V
    gpt2 = transformers.GPT2LMHeadModel(transformers.GPT2Config(
        n_layer=L, n_embd=D, n_head=H, vocab_size=V, n_positions=128))  # fmt: skip
    bert = transformers.BertModel(transformers.BertConfig(
        num_hidden_layers=L, hidden_size=D, num_attention_heads=H, intermediate_size=I,
        vocab_size=V))  # fmt: skip
    llama = transformers.LlamaForCausalLM(transformers.LlamaConfig(
        num_hidden_layers=L, hidden_size=D, num_attention_heads=H,
        num_key_value_heads=SMALL_KV_HEADS, intermediate_size=I, vocab_size=V,
        max_position_embeddings=128))  # fmt: skip
    folders = optimum_export(root, {"gpt2": (gpt2, "text-generation-with-past"),
                                    "bert": (bert, "feature-extraction"),
                                    "llama": (llama, "text-generation-with-past")})  # fmt: skip
    paths = {name: folder / "model.onnx" for name, folder in folders.items()}
    for name, kind in (("bert", "bert"), ("gpt2", "gpt2")):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = optimizer.optimize_model(str(paths[name]), model_type=kind, num_heads=H,
                                             hidden_size=D, opt_level=1, use_gpu=False)  # fmt: skip
        paths[f"{name}_ort"] = root / f"{name}_ort.onnx"
        model.save_model_to_file(str(paths[f"{name}_ort"]))
    return paths
