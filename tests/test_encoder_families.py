"""Coverage and FLOPs of Optimum exports of vision models and text encoders.

Each is a tiny random config exported once per module by Optimum's main_export (nothing is
downloaded): ResNet, ConvNeXt, ViT, Swin, MobileViT (image-classification), SegFormer
(semantic-segmentation), and DistilBERT, RoBERTa and DeBERTa-v2 (feature-extraction). Each is
linted at batch 1 (32 x 32 RGB images, 16 tokens) with every dim bound, and checked for full
coverage and for FLOPs of the matrix products (convolutions included) equal to torch's
FlopCounterMode on the Hugging Face model at the same shapes, with eager attention
(FlopCounterMode has no formula for the CPU kernel of scaled_dot_product_attention). They add
convolution stages, depthwise and grouped convolutions, windowed attention (Swin), attention over
a downsampled sequence (SegFormer), disentangled relative attention (DeBERTa) and mixed
convolution-transformer blocks (MobileViT) to the exports of test_real_exports.py (BERT,
GPT-2) and test_export_dims.py (CLIP).
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("optimum.exporters.onnx")

from exportcheck import assert_fully_modelled, matrix_product_flops, torch_flops

from memlint.api import lint

# transformers' DeBERTa-v2 scripts a helper with torch.jit.script, which torch 2.13 deprecates
pytestmark = pytest.mark.filterwarnings(
    "ignore:`torch.jit.script` is deprecated:DeprecationWarning")

IMAGE, TOKENS = 32, 16
IMAGE_DIMS = {"batch_size": 1, "num_channels": 3, "height": IMAGE, "width": IMAGE}
TEXT_DIMS = {"batch_size": 1, "sequence_length": TOKENS}

# name -> (model class, config class, config keys, optimum task, model keyword arguments)
FAMILIES = {
    "resnet": ("ResNetForImageClassification", "ResNetConfig", {
        "embedding_size": 16, "hidden_sizes": [16, 32], "depths": [1, 1], "layer_type": "basic",
        "num_labels": 10}, "image-classification", {}),
    "convnext": ("ConvNextForImageClassification", "ConvNextConfig", {
        "hidden_sizes": [16, 32], "depths": [1, 1], "num_stages": 2, "image_size": IMAGE,
        "num_labels": 10}, "image-classification", {}),
    "vit": ("ViTForImageClassification", "ViTConfig", {
        "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
        "intermediate_size": 64, "image_size": IMAGE, "patch_size": 8, "num_labels": 10},
        "image-classification", {}),
    "swin": ("SwinForImageClassification", "SwinConfig", {
        "image_size": IMAGE, "patch_size": 4, "embed_dim": 16, "depths": [1, 1],
        "num_heads": [2, 4], "window_size": 4, "num_labels": 10}, "image-classification", {}),
    "mobilevit": ("MobileViTForImageClassification", "MobileViTConfig", {
        "image_size": IMAGE, "hidden_sizes": [16, 24, 32],
        "neck_hidden_sizes": [8, 8, 16, 16, 24, 24, 32], "num_labels": 10},
        "image-classification", {}),
    "segformer": ("SegformerForSemanticSegmentation", "SegformerConfig", {
        "num_encoder_blocks": 2, "depths": [1, 1], "sr_ratios": [2, 1], "hidden_sizes": [16, 32],
        "num_attention_heads": [1, 2], "decoder_hidden_size": 32, "num_labels": 4,
        "image_size": IMAGE, "patch_sizes": [7, 3], "strides": [4, 2], "mlp_ratios": [2, 2]},
        "semantic-segmentation", {}),
    "distilbert": ("DistilBertModel", "DistilBertConfig", {
        "n_layers": 2, "dim": 64, "n_heads": 4, "hidden_dim": 128, "vocab_size": 500},
        "feature-extraction", {}),
    # the export's one output is last_hidden_state: no pooler for torch to count either
    "roberta": ("RobertaModel", "RobertaConfig", {
        "num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 4,
        "intermediate_size": 128, "vocab_size": 500}, "feature-extraction",
        {"add_pooling_layer": False}),
    "deberta": ("DebertaV2Model", "DebertaV2Config", {
        "num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 4,
        "intermediate_size": 128, "vocab_size": 500}, "feature-extraction", {}),
}  # fmt: skip


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """{name: root/<name>-onnx} for every family this transformers has (the Hugging Face model
    saved beside it, root/<name>-hf)."""
    from clitools import optimum_export

    root = tmp_path_factory.mktemp("encoder-families")
    torch.manual_seed(0)
    models = {}
    for name, (model_class, config_class, keys, task, kwargs) in FAMILIES.items():
        if hasattr(transformers, model_class):
            config = getattr(transformers, config_class)(**keys)
            models[name] = (getattr(transformers, model_class)(config, **kwargs), task)
    return optimum_export(root, models)


def export_of(exports, name: str):
    if name not in exports:
        pytest.skip(f"transformers {transformers.__version__} has no {FAMILIES[name][0]}")
    return exports[name]


def is_text(name: str) -> bool:
    return FAMILIES[name][3] == "feature-extraction"


@pytest.fixture(scope="module")
def reports(exports):
    return {name: lint(folder, hw="a100", dims=TEXT_DIMS if is_text(name) else IMAGE_DIMS,
                       strict_dims=True)
            for name, folder in exports.items()}


@pytest.mark.parametrize("name", FAMILIES)
def test_every_node_modelled_and_every_shape_resolved(exports, reports, name):
    export_of(exports, name)
    assert_fully_modelled(reports[name], name)


@pytest.mark.parametrize("name", FAMILIES)
def test_matmul_and_conv_flops_match_torchs_counter(exports, reports, name):
    folder = export_of(exports, name)
    model_class, _, _, _, kwargs = FAMILIES[name]
    model = getattr(transformers, model_class).from_pretrained(
        folder.parent / f"{name}-hf", local_files_only=True, attn_implementation="eager",
        **kwargs).eval()
    torch.manual_seed(1)
    example = (torch.randint(0, 500, (1, TOKENS)) if is_text(name)
               else torch.randn(1, 3, IMAGE, IMAGE))
    expected, by_op = torch_flops(model, example)
    assert matrix_product_flops(reports[name]) == expected, by_op


def test_vit_flops_by_hand(exports, reports):
    export_of(exports, "vit")
    # 32 x 32 image, 8 x 8 patches: 16 patches + the class token = 17 tokens of hidden 32.
    #   patch embedding, a Conv 3 -> 32 with an 8 x 8 kernel on a 4 x 4 grid:
    #     2 x (32 x 16) x (3 x 8 x 8)                        = 196,608
    #   per layer: Q, K, V 3 x 2 x 17 x 32 x 32             = 104,448
    #     scores and context, 4 heads of 8: 2 x 2 x 4 x 17 x 17 x 8 = 36,992
    #     attention output 2 x 17 x 32 x 32                 =  34,816
    #     MLP 32 -> 64 -> 32: 2 x 2 x 17 x 32 x 64          = 139,264
    #     = 315,520; 2 layers = 631,040
    #   classifier on the class token 2 x 32 x 10           =     640
    # Total 828,288.
    assert matrix_product_flops(reports["vit"]) == 828_288
