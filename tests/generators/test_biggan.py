"""BigGAN-PyTorch 128 px (biggan-128) and BigBiGAN (bigbigan-128): checkpoint format, spectral
norm, conditional batch norm and hierarchical z, on random weights."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from saliency import distributed, generators
from saliency.downloads import load_state_dict_checked
from saliency.errors import UserError
from saliency.generators.biggan import BigGAN, BigGANConfig, ClassConditionalBatchNorm
from saliency.generators.layers import PowerStepSpectralNorm, StoredUVSpectralNorm, spectral_norm_cache

FORMATS = Path(__file__).resolve().parents[1] / "fixtures" / "formats"  # facts about published files
NARROW = BigGANConfig(ch=4)  # the 128 px architecture at a 24th of its width


def published_shapes() -> dict[str, tuple[int, ...]]:
    listing = FORMATS / "biggan-pytorch-128.G_ema.tsv"
    shapes = {}
    for line in listing.read_text().splitlines():
        if not line.startswith("#"):
            key, shape, _ = line.split("\t")
            shapes[key] = () if shape == "scalar" else tuple(int(s) for s in shape.split("x"))
    return shapes


def random_checkpoint(shapes: dict[str, tuple[int, ...]], seed: int = 0) -> dict[str, torch.Tensor]:
    """Random values in the published layout, built from the key list alone (not from our model)."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in shapes.items():
        if key.endswith("stored_var"):
            value = torch.rand(shape, generator=gen) + 0.5
        elif key.endswith("sv0"):
            value = torch.ones(shape)
        elif key.endswith(("stored_mean", "bias", "u0")):
            value = torch.randn(shape, generator=gen) * (1 if key.endswith("u0") else 0.1)
        elif key.endswith("gain") or key.endswith("gamma"):
            value = torch.rand(shape, generator=gen) + 0.5
        else:
            value = torch.randn(shape, generator=gen) * 0.02
        state[key] = value
    return state


@pytest.mark.parametrize("name", ["biggan-128", "bigbigan-128"])
def test_state_dict_has_exactly_the_published_keys_and_shapes(name: str) -> None:
    model = generators.load(name, weights="random")
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == published_shapes()


def test_published_checkpoint_loads_strictly_and_generates(tmp_path: Path) -> None:
    checkpoint = random_checkpoint(published_shapes())
    torch.save(checkpoint, tmp_path / "G_ema.pth")
    model = generators.load("biggan-128", weights=str(tmp_path / "G_ema.pth"))
    assert torch.equal(model.state_dict()["blocks.3.1.gamma"], checkpoint["blocks.3.1.gamma"])
    assert (model.dim_z, model.n_classes, model.resolution) == (120, 1000, 128)
    assert model.class_names[0] == "tench"
    with torch.no_grad():
        images = model(model.sample_z(1, seed=0), torch.tensor([239]))
    assert images.shape == (1, 3, 128, 128)
    assert torch.isfinite(images).all() and images.abs().max() <= 1 and images.std() > 0.05


@pytest.mark.parametrize("change, named", [
    (lambda s: s.pop("blocks.2.0.bn1.gain.u0"), "missing key 'blocks.2.0.bn1.gain.u0'"),
    (lambda s: s.update({"blocks.9.0.conv1.weight": torch.zeros(1)}),
     "unexpected key 'blocks.9.0.conv1.weight'"),
    (lambda s: s.update({"linear.weight": torch.zeros(1024, 128)}),
     r"'linear.weight' has shape \(1024, 128\), expected \(1024, 20\)"),
])
def test_wrong_key_set_or_shape_is_a_user_error_naming_the_key(change, named: str) -> None:
    model = BigGAN(NARROW)
    state = model.state_dict()
    change(state)
    with pytest.raises(UserError, match=f"G_ema.pth is not a biggan-128 checkpoint: {named}"):
        load_state_dict_checked(model, state, Path("G_ema.pth"), "biggan-128")


def test_power_step_sigma_on_a_known_matrix() -> None:
    """W = diag(3, 1), u0 = (1, 1): v = (3, 1)/√10, Wv = (9, 1)/√10, σ = ‖Wv‖ = √8.2; u0 is not updated."""
    layer = PowerStepSpectralNorm.linear(2, 2, bias=False).train()
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[3.0, 0.0], [0.0, 1.0]]))
        layer.u0.copy_(torch.tensor([[1.0, 1.0]]))
    assert layer.sigma().item() == pytest.approx(math.sqrt(8.2), rel=1e-6)
    out = layer(torch.tensor([[1.0, 1.0]]))
    torch.testing.assert_close(out, torch.tensor([[3.0, 1.0]]) / math.sqrt(8.2))
    assert torch.equal(layer.u0, torch.tensor([[1.0, 1.0]]))


def test_stored_uv_sigma_on_a_known_matrix() -> None:
    """σ = uᵀWv with the stored vectors as they are: u = v = (0.6, 0.8) gives 0.36·3 + 0.64·1 = 1.72."""
    layer = StoredUVSpectralNorm.conv(2, 2, 1, bias=False)
    with torch.no_grad():
        layer.weight_orig.copy_(torch.tensor([[3.0, 0.0], [0.0, 1.0]]).view(2, 2, 1, 1))
        layer.weight_u.copy_(torch.tensor([0.6, 0.8]))
        layer.weight_v.copy_(torch.tensor([0.6, 0.8]))
    assert layer.sigma().item() == pytest.approx(1.72, rel=1e-6)
    out = layer(torch.ones(1, 2, 1, 1))
    torch.testing.assert_close(out.flatten(), torch.tensor([3.0, 1.0]) / 1.72)


def test_random_stored_uv_layers_start_near_the_top_singular_value() -> None:
    """Random-weight models get u, v from power iterations (arbitrary ones give uᵀWv near 0)."""
    torch.manual_seed(0)
    for _ in range(5):
        layer = StoredUVSpectralNorm.linear(64, 256)
        top = torch.linalg.matrix_norm(layer.weight_orig, ord=2)
        assert 0.85 * top < layer.sigma() <= top * (1 + 1e-5)


def test_conditional_batch_norm_known_answer() -> None:
    """(x − mean)/√(var + eps) · (1 + gain(y)) + bias(y), gain and bias linear in y."""
    bn = ClassConditionalBatchNorm(num_features=2, cond_dim=3, eps=1e-5, sn_eps=1e-6)
    with torch.no_grad():
        bn.gain.weight.copy_(torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, 0.0]]))  # σ = 2: gain row 0 = y0
        bn.bias.weight.copy_(torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, 1.0]]))  # σ = 1: bias row 1 = y2
        bn.stored_mean.copy_(torch.tensor([1.0, -1.0]))
        bn.stored_var.copy_(torch.tensor([4.0, 0.25]))
    x = torch.tensor([3.0, 0.0]).view(1, 2, 1, 1)
    y = torch.tensor([[0.5, 7.0, -2.0]])
    expected = torch.tensor([(3 - 1) / math.sqrt(4 + 1e-5) * 1.5, (0 + 1) / math.sqrt(0.25 + 1e-5) - 2.0])
    torch.testing.assert_close(bn(x, y).flatten(), expected)


def test_hierarchical_z_reaches_the_right_blocks() -> None:
    """Chunk 0 feeds the linear layer, chunk k ≥ 1 the batch norms of block k: moving chunk k
    leaves the outputs of the blocks before block k unchanged and changes all later ones."""
    torch.manual_seed(0)
    model = BigGAN(NARROW).eval()
    outputs: list[torch.Tensor] = []
    for stage in model.blocks:
        stage[0].register_forward_hook(lambda _m, _i, out: outputs.append(out))
    z, classes = model.sample_z(1, seed=0), torch.tensor([3])
    with torch.no_grad():
        model(z, classes)
        reference = list(outputs)
        for k in range(6):
            outputs.clear()
            moved = z.clone()
            moved[:, 20 * k: 20 * (k + 1)] += 1.0
            model(moved, classes)
            unchanged = [torch.equal(a, b) for a, b in zip(outputs, reference, strict=True)]
            first_changed = max(k - 1, 0)
            assert unchanged == [i < first_changed for i in range(5)]


def test_early_features_are_the_affine_image_of_first_layer_weight() -> None:
    """early_features(z + dz) − early_features(z) = first_layer_weight() @ dz, with every chunk of
    z reaching some row (which checks that the z columns are the ones after the class embedding)."""
    torch.manual_seed(1)
    model = BigGAN(NARROW).eval()
    z, dz, classes = model.sample_z(2, seed=0), torch.randn(2, 120), torch.tensor([7, 8])
    weight = model.first_layer_weight()
    with torch.no_grad():
        change = model.early_features(z + dz, classes) - model.early_features(z, classes)
    assert weight.shape == (change.shape[1], 120)
    assert (weight.abs().sum(0) > 0).all()
    torch.testing.assert_close(change, dz @ weight.T, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(weight[: 16 * 4 * 16, :20], model.linear.normalized_weight().detach())


def spectral_layers(model: torch.nn.Module) -> list[PowerStepSpectralNorm]:
    return [m for m in model.modules() if isinstance(m, PowerStepSpectralNorm)]


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_frozen_generator_computes_w_over_sigma_once_and_equals_recomputing_it(precision: str) -> None:
    """Kept W/σ gives the very images recomputing it at every forward (the references' way) gives,
    in fp32 and under bf16 autocast; a second forward reuses what the first computed."""
    torch.manual_seed(3)
    model = BigGAN(NARROW).eval().requires_grad_(False)
    z, classes = model.sample_z(2, seed=0), torch.tensor([3, 9])
    cpu = torch.device("cpu")
    with spectral_norm_cache(False), distributed.autocast(cpu, precision):
        recomputed = model(z, classes)
    assert all(not layer._kept for layer in spectral_layers(model))
    with distributed.autocast(cpu, precision):
        first = model(z, classes)
        kept = [next(iter(layer._kept.values()))[1] for layer in spectral_layers(model)]
        second = model(z, classes)
    assert torch.equal(first, recomputed) and torch.equal(second, recomputed)
    assert all(next(iter(layer._kept.values()))[1] is tensor for layer, tensor in zip(spectral_layers(model), kept))


def test_kept_w_over_sigma_follows_every_change_of_the_weights() -> None:
    """Loading other weights, changing one in place, converting the dtype, or training the weights
    (a gradient must reach them) all give what a model built with those weights gives."""
    torch.manual_seed(4)
    model = BigGAN(NARROW).eval().requires_grad_(False)
    other = BigGAN(NARROW).eval().requires_grad_(False)
    z, classes = model.sample_z(2, seed=0), torch.tensor([1, 2])

    def uncached(module: torch.nn.Module) -> torch.Tensor:
        with spectral_norm_cache(False):
            return module(z.to(next(module.parameters()).dtype), classes)

    with torch.no_grad():
        model(z, classes)
        model.load_state_dict(other.state_dict())
        assert torch.equal(model(z, classes), uncached(other))
        model.linear.weight.mul_(1.5)
        model.blocks[0][0].conv1.u0.normal_()
        changed = model(z, classes)
        assert torch.equal(changed, uncached(model)) and not torch.equal(changed, uncached(other))
        model.double()
        assert torch.equal(model(z.double(), classes), uncached(model))
    model.float().requires_grad_(True)
    model(z, classes).square().mean().backward()
    assert model.linear.weight.grad is not None and model.linear.weight.grad.abs().sum() > 0


def test_bigbigan_is_unconditional_with_eps_1e4() -> None:
    model = generators.load("bigbigan-128", weights="random")
    assert (model.dim_z, model.n_classes, model.class_names) == (120, 0, [])
    eps = {m.eps for m in model.modules() if isinstance(m, (ClassConditionalBatchNorm, PowerStepSpectralNorm))}
    assert eps == {1e-4}
    z = model.sample_z(1, seed=0)
    with torch.no_grad():
        images = model(z, model.sample_classes(1, seed=0))
        assert torch.equal(model(z, torch.tensor([917])), images)  # any class id is class 0
    assert images.shape == (1, 3, 128, 128) and torch.isfinite(images).all() and images.abs().max() <= 1


def test_missing_weights_offline_fail_at_once_with_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SALIENCY_CACHE", str(tmp_path))
    monkeypatch.setenv("SALIENCY_OFFLINE", "1")
    with pytest.raises(UserError) as error:
        generators.load("biggan-128")
    message = str(error.value)
    assert "\n" not in message
    assert f"put G_ema.pth at {tmp_path / 'biggan-128' / 'G_ema.pth'} or pass --weights PATH" in message
