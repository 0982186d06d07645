"""BigGAN-deep against the reference package (pytorch-pretrained-biggan) with random weights."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from pytorch_pretrained_biggan import BigGAN as ReferenceBigGAN
from pytorch_pretrained_biggan import BigGANConfig as ReferenceConfig
from pytorch_pretrained_biggan.convert_tf_to_pytorch import BigGAN256, BigGAN512

from saliency import generators
from saliency.errors import UserError
from saliency.generators.biggan_deep import CONFIGS, BigGANDeep

FORMATS = Path(__file__).resolve().parents[1] / "fixtures" / "formats"  # facts about published files
# biggan-deep-128 at a 32th of its width: every kind of layer, fast on a CPU.
SMALL = dataclasses.replace(CONFIGS["biggan-deep-128"], channel_width=4)


def read_tsv(path: Path) -> dict[str, tuple[int, ...]]:
    shapes = {}
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            continue
        key, shape, _ = line.split("\t")
        shapes[key] = () if shape == "scalar" else tuple(int(s) for s in shape.split("x"))
    return shapes


def reference_model(config: dict, seed: int = 0) -> ReferenceBigGAN:
    """The reference generator with random weights it can run: random standing statistics and
    attention gain, and each spectral norm's u, v set to the true top singular vectors."""
    torch.manual_seed(seed)
    model = ReferenceBigGAN(ReferenceConfig.from_dict(config)).eval()
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name.endswith("running_means"):
                tensor.normal_(0, 0.3)
            elif name.endswith("running_vars"):
                tensor.uniform_(0.5, 2.0)
            elif name == "generator.bn.weight":  # left uninitialised by the reference
                tensor.uniform_(0.5, 1.5)
            elif name == "generator.bn.bias":
                tensor.normal_(0, 0.1)
            elif name.endswith("gamma"):
                tensor.fill_(0.7)
            elif name.endswith("weight_orig"):
                u, _, vh = torch.linalg.svd(tensor.flatten(1), full_matrices=False)
                prefix = name[: -len("orig")]
                model.state_dict()[prefix + "u"].copy_(u[:, 0])
                model.state_dict()[prefix + "v"].copy_(vh[0])
    return model


def one_hot(classes: torch.Tensor, n: int = 1000) -> torch.Tensor:
    return torch.nn.functional.one_hot(classes, n).float()


def assert_close_to(ours: torch.Tensor, reference: torch.Tensor) -> None:
    assert ours.shape == reference.shape
    assert torch.isfinite(ours).all()
    assert reference.std() > 0.05  # the comparison means something only if the images vary
    assert (ours - reference).abs().max() < 1e-3 * reference.std()


def test_full_128_state_dict_matches_published_format_and_reference_outputs(tmp_path: Path) -> None:
    """The exact biggan-deep-128 config: our keys and shapes equal the published ones, and the
    reference's checkpoint (saved as published, config.json beside) loads through the registry
    and gives the same images."""
    config = json.loads((FORMATS / "biggan-deep-128.config.json").read_text())
    published = read_tsv(FORMATS / "biggan-deep-128.pytorch_model.tsv")
    reference = reference_model(config)
    assert {k: tuple(v.shape) for k, v in reference.state_dict().items()} == published

    torch.save(reference.state_dict(), tmp_path / "pytorch_model.bin")
    (tmp_path / "config.json").write_text(json.dumps(config))
    ours = generators.load("biggan-deep-128", weights=str(tmp_path), truncation=0.4)
    assert {k: tuple(v.shape) for k, v in ours.state_dict().items()} == published
    assert (ours.dim_z, ours.n_classes, ours.resolution) == (128, 1000, 128)
    assert len(ours.class_names) == 1000 and ours.class_names[207] == "golden retriever"

    z = ours.sample_z(1, seed=3, truncation=0.4)
    classes = torch.tensor([207])
    with torch.no_grad():
        assert_close_to(ours(z, classes), reference(z, one_hot(classes), 0.4))


@pytest.mark.parametrize("truncation", [1.0, 0.5, 0.47, 0.4, 0.02])
def test_small_config_matches_reference_at_every_kind_of_truncation(truncation: float) -> None:
    """Grid values, a value between grid points, and 0.4 (which the reference's rounding sends to
    the next grid point) all select the same batch-norm statistics as the reference."""
    reference = reference_model(dataclasses.asdict(SMALL), seed=1)
    ours = BigGANDeep(SMALL, truncation=truncation).eval()
    ours.load_state_dict(reference.state_dict(), strict=True)
    z = ours.sample_z(2, seed=0, truncation=truncation)
    classes = torch.tensor([1, 998])
    with torch.no_grad():
        assert_close_to(ours(z, classes), reference(z, one_hot(classes), truncation))


def test_first_layer_and_early_features_match_reference() -> None:
    """early_features is the reference's gen_z output; first_layer_weight its z columns, the
    affine map from z to early_features."""
    reference = reference_model(dataclasses.asdict(SMALL), seed=2)
    ours = BigGANDeep(SMALL, truncation=0.5).eval()
    ours.load_state_dict(reference.state_dict(), strict=True)
    z, dz, classes = ours.sample_z(2, seed=1, truncation=0.5), torch.randn(2, 128), torch.tensor([5, 7])
    with torch.no_grad():
        cond = torch.cat([z, reference.embeddings(one_hot(classes))], dim=1)
        torch.testing.assert_close(ours.early_features(z, classes), reference.generator.gen_z(cond))
        gen_z_weight = reference.generator.gen_z.weight  # normalised by the reference's eval hook
        change = ours.early_features(z + dz, classes) - ours.early_features(z, classes)
    assert ours.first_layer_weight().shape == (16 * 16 * SMALL.channel_width, 128)
    torch.testing.assert_close(ours.first_layer_weight(), gen_z_weight[:, :128])
    torch.testing.assert_close(change, dz @ ours.first_layer_weight().T, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name, reference_config", [("biggan-deep-256", BigGAN256), ("biggan-deep-512", BigGAN512)])
def test_larger_configs_match_the_published_architectures(name: str, reference_config: ReferenceConfig) -> None:
    """Our 256/512 configs equal the reference's, and the modules have the same keys and shapes
    (compared at a small channel width to stay fast)."""
    ours_config = CONFIGS[name]
    expected = {k: (tuple(map(tuple, v)) if k == "layers" else v) for k, v in reference_config.to_dict().items()}
    assert dataclasses.asdict(ours_config) | {"layers": ours_config.layers} == expected

    narrow = dataclasses.replace(ours_config, channel_width=4)
    reference = ReferenceBigGAN(ReferenceConfig.from_dict(dataclasses.asdict(narrow)))
    ours = BigGANDeep(narrow)
    assert ({k: v.shape for k, v in ours.state_dict().items()}
            == {k: v.shape for k, v in reference.state_dict().items()})


def test_random_weights_give_finite_images_and_gradients_in_z() -> None:
    model = BigGANDeep(SMALL).eval()
    z = model.sample_z(2, seed=0).requires_grad_()
    images = model(z, torch.tensor([0, 1]))
    assert images.shape == (2, 3, 128, 128) and images.abs().max() <= 1 and images.std() > 0
    images.sum().backward()
    assert torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0


def test_wrong_config_or_truncation_is_a_user_error(tmp_path: Path) -> None:
    torch.save({}, tmp_path / "pytorch_model.bin")
    config = dataclasses.asdict(CONFIGS["biggan-deep-256"])
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(UserError, match=r"config\.json describes another model than biggan-deep-128 .*output_dim"):
        generators.load("biggan-deep-128", weights=str(tmp_path))
    with pytest.raises(UserError, match="truncation"):
        generators.load("biggan-deep-128", weights="random", truncation=1.5)
