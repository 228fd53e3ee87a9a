import io

import numpy as np
import pytest
import torch
from PIL import Image

from utils.metrics import psnr
from utils.physics import (DownsampleTerm, IdentityTerm, MaskedTerm, add_gaussian_noise,
                           bernoulli_mask, bicubic_upscale, downsample, enhance, jpeg_compress,
                           lanczos_kernel, pil_downscale)


def _img_uint8(h=32, w=40, seed=0):
    rs = np.random.RandomState(seed)
    base = np.kron(rs.randint(0, 256, (h // 8, w // 8, 3)), np.ones((8, 8, 1)))
    return np.clip(base + rs.randint(-20, 21, (h, w, 3)), 0, 255).astype(np.uint8)


# ----------------------------------------------------------------- degradations
def test_bernoulli_mask_matches_global_seed_rule():
    state = np.random.get_state()
    try:
        for seed, rate, (h, w) in [(100, 0.5, (37, 53)), (7, 0.9, (16, 16))]:
            np.random.seed(seed)
            ref = np.random.random_sample(size=(1, h, w)) > rate
            m = bernoulli_mask(h, w, rate=rate, seed=seed)
            assert m.dtype == bool and m.shape == (1, h, w)
            assert np.array_equal(m, ref)
    finally:
        np.random.set_state(state)
    before = np.random.get_state()[1].copy()
    m = bernoulli_mask(128, 128)
    assert np.array_equal(np.random.get_state()[1], before)  # global state untouched
    assert abs(m.mean() - 0.5) < 0.02


def test_gaussian_noise_numpy_and_torch():
    x = np.full((3, 8, 9), 0.5, dtype=np.float32)
    y = add_gaussian_noise(x, 25, seed=0)
    ref = np.clip(x + np.random.RandomState(0).normal(0, 25 / 255, x.shape), 0, 1)
    assert y.dtype == np.float32 and np.allclose(y, ref, atol=1e-6)
    assert np.array_equal(y, add_gaussian_noise(x, 25, seed=0))
    assert abs(np.std(y - x) - 25 / 255) < 0.02
    yt = add_gaussian_noise(torch.from_numpy(x), 25, seed=0)
    assert isinstance(yt, torch.Tensor) and np.allclose(yt.numpy(), y, atol=1e-6)
    assert add_gaussian_noise(np.ones((2, 2)), 200, seed=1).max() <= 1


def test_jpeg_deterministic_and_matches_manual_pillow():
    img = _img_uint8()
    a, b = jpeg_compress(img, 10), jpeg_compress(img, 10)
    assert a.dtype == np.uint8 and a.shape == img.shape and np.array_equal(a, b)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=10, optimize=True, progressive=True)
    manual = np.array(Image.open(io.BytesIO(buf.getvalue())))
    to_t = lambda u: torch.from_numpy(u).permute(2, 0, 1)[None].float() / 255
    assert torch.allclose(psnr(to_t(a), to_t(img)), psnr(to_t(manual), to_t(img)))
    assert np.array_equal(a, manual)
    assert psnr(to_t(jpeg_compress(img, 90)), to_t(img)) > psnr(to_t(a), to_t(img))
    for q in [0, 101, 50.0, True, "50"]:
        with pytest.raises(ValueError):
            jpeg_compress(img, q)


def test_pil_resize_helpers():
    img = _img_uint8(32, 40)
    lr = pil_downscale(img, 4)
    assert lr.shape == (8, 10, 3) and lr.dtype == np.uint8
    assert np.array_equal(lr, np.array(Image.fromarray(img).resize((10, 8), Image.LANCZOS)))
    up = bicubic_upscale(lr, 4)
    assert up.shape == img.shape and up.dtype == np.uint8


def test_enhance_formula_both_variants():
    x = np.array([0.2, 0.5, 0.9, 0.6])
    base = np.array([0.3, 0.4, 0.5, 0.6])
    # detail x - base = [-0.1, 0.1, 0.4, 0.0]
    np.testing.assert_allclose(enhance(x, base, 1.0), [0.2, 0.6, 1.0, 0.6], atol=1e-12)
    np.testing.assert_allclose(enhance(x, base, 2.0, signed=True), [0.0, 0.7, 1.0, 0.6], atol=1e-12)
    t = enhance(torch.tensor(x), torch.tensor(base), 2.0, signed=True)
    assert isinstance(t, torch.Tensor) and np.allclose(t.numpy(), [0.0, 0.7, 1.0, 0.6], atol=1e-12)


# ----------------------------------------------------------------- Lanczos downsampler
@pytest.mark.parametrize("f", [2, 4, 8])
def test_lanczos_kernel_and_downsample(f):
    k = lanczos_kernel(f)
    assert k.shape == (4 * f, 4 * f)
    assert abs(k.sum().item() - 1) < 1e-6
    assert torch.allclose(k, k.T) and torch.allclose(k, k.flip(0)) and torch.allclose(k, k.flip(1))
    x = torch.full((2, 3, 16 * f, 8 * f), 0.37)
    y = downsample(x, f)
    assert y.shape == (2, 3, 16, 8)
    assert (y - 0.37).abs().max() < 1e-6


def test_lanczos_kernel_value():
    # f = 2: d = [1.75, 1.25, .75, .25, .25, .75, 1.25, 1.75]
    d = np.array([1.75, 1.25, 0.75, 0.25, 0.25, 0.75, 1.25, 1.75])
    L = 2 * np.sin(np.pi * d) * np.sin(np.pi * d / 2) / (np.pi ** 2 * d ** 2)
    ref = np.outer(L, L) / np.outer(L, L).sum()
    assert np.allclose(lanczos_kernel(2).numpy(), ref, atol=1e-7)


def test_downsample_is_depthwise():
    x = torch.zeros(1, 3, 16, 16)
    x[:, 1] = torch.rand(16, 16)
    y = downsample(x, 4)
    assert y[:, 0].abs().max() == 0 and y[:, 2].abs().max() == 0 and y[:, 1].abs().max() > 0


# ----------------------------------------------------------------- data terms
def test_identity_term_batched():
    g = torch.Generator().manual_seed(0)
    y = torch.rand(2, 3, 8, 8, generator=g)
    x = torch.rand(2, 3, 8, 8, generator=g)
    t = IdentityTerm(y)
    assert torch.equal(t(x), x)
    loss = t.loss(x)
    assert loss.shape == (2,)
    for b in range(2):
        single = IdentityTerm(y[b:b + 1]).loss(x[b:b + 1])
        assert torch.allclose(loss[b], single[0])
        assert torch.allclose(loss[b], ((x[b] - y[b]) ** 2).mean())
    assert torch.allclose(t.psnr_obs(x), psnr(x, y))


def test_masked_term_ignores_unknown_pixels():
    g = torch.Generator().manual_seed(1)
    y = torch.rand(2, 3, 10, 12, generator=g)
    mask = torch.from_numpy(bernoulli_mask(10, 12, 0.5, seed=3))[None]  # (1,1,H,W) bool
    t = MaskedTerm(y, mask)
    x = torch.rand(2, 3, 10, 12, generator=g, requires_grad=True)
    loss = t.loss(x)
    assert loss.shape == (2,)
    loss.sum().backward()
    unknown = ~mask.expand_as(x)
    assert torch.all(x.grad[unknown] == 0) and torch.all(x.grad[~unknown] != 0)
    # DIP's convention: mean over ALL pixels of the squared masked error
    m = mask.float()
    assert torch.allclose(loss, (((x - y) * m) ** 2).mean((1, 2, 3)))
    # changing unknown pixels of y changes nothing
    y2 = y.clone()
    y2[unknown] = 0.0
    assert torch.allclose(MaskedTerm(y2, mask).loss(x), loss)
    # psnr over known pixels only, member by member
    p = t.psnr_obs(x)
    for b in range(2):
        k = mask[0, 0]
        mse = ((x[b].detach() - y[b]) ** 2)[:, k].mean()
        assert torch.allclose(p[b], 10 * torch.log10(1 / mse), atol=1e-4)
        assert torch.allclose(MaskedTerm(y[b:b + 1], mask).loss(x[b:b + 1])[0], loss[b])


def test_downsample_term_batched_and_to():
    g = torch.Generator().manual_seed(2)
    hr = torch.rand(2, 3, 32, 24, generator=g)
    y = downsample(hr, 4)
    t = DownsampleTerm(y, 4)
    assert torch.allclose(t.loss(hr), torch.zeros(2), atol=1e-12)
    assert torch.isinf(t.psnr_obs(hr)).all() or (t.psnr_obs(hr) > 100).all()
    x = torch.rand(2, 3, 32, 24, generator=g)
    loss = t.loss(x)
    for b in range(2):
        assert torch.allclose(loss[b], DownsampleTerm(y[b:b + 1], 4).loss(x[b:b + 1])[0])
    t64 = t.to(torch.float64)
    assert t64.observation.dtype == torch.float64 and t64.kernel.dtype == torch.float64
    names = {n for n, _ in t.named_buffers()}
    assert {"observation", "kernel"} <= names


# ----------------------------------------------------------------- blur kernel bounds
def test_the_largest_blur_sigma_fits_the_reflect_padding():
    from utils.physics import blur, gaussian_kernel, gaussian_radius, max_blur_sigma
    for side in (16, 48, 64, 127, 128):
        top = max_blur_sigma(side, side + 7)
        assert gaussian_radius(top) <= side - 1 < gaussian_radius(top + 0.01)
        k = gaussian_kernel(top)
        x = torch.rand(1, 3, side, side + 7, generator=torch.Generator().manual_seed(side))
        out = blur(x, k)        # reflect padding (not the replicate fallback) is possible
        assert out.shape == x.shape and torch.isfinite(out).all()


def test_a_huge_blur_sigma_is_refused_before_its_kernel_is_allocated():
    from utils.physics import gaussian_kernel
    with pytest.raises(ValueError, match="radius 3000000000, more than 63"):
        gaussian_kernel(1e9, max_radius=63)          # 2.8e19 taps: would never be allocated
    for bad in (0, -1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="finite number > 0"):
            gaussian_kernel(bad)
    assert gaussian_kernel(1.6).shape == (11, 11)      # the default kernel is unchanged


# ----------------------------------------------------------------- the spectral objective
def _direct_dft_modulus_mean(r):
    """mean |F r| with the unitary DFT written out as matrices (no torch.fft)."""
    h, w = r.shape[-2:]
    def dft(n):
        k = torch.arange(n, dtype=torch.float64)
        return torch.exp(-2j * torch.pi * torch.outer(k, k) / n) / n ** 0.5
    spec = dft(h) @ r.to(torch.complex128) @ dft(w).T
    return spec.abs().flatten(1).mean(1)


def test_spectral_loss_is_the_mean_modulus_of_the_residual_spectrum():
    g = torch.Generator().manual_seed(5)
    # values exact in fp32 (a term stores its observation so), the terms moved to fp64
    y = torch.rand(2, 3, 10, 12, generator=g).double()
    x = torch.rand(2, 3, 10, 12, generator=g, dtype=torch.float64)
    t = IdentityTerm(y).to(torch.float64).with_objective("spectral")
    assert t.objective == "spectral" and IdentityTerm(y).objective == "mse"
    assert torch.allclose(t.loss(x), _direct_dft_modulus_mean(x - y), rtol=1e-10)
    # the masked and the downsampled terms compare A x with y, the mask before the transform
    mask = torch.from_numpy(bernoulli_mask(10, 12, 0.5, seed=3))[None].double()
    tm = MaskedTerm(y, mask).to(torch.float64).with_objective("spectral")
    assert torch.allclose(tm.loss(x), _direct_dft_modulus_mean((x - y) * mask), rtol=1e-10)
    hr = torch.rand(2, 3, 32, 24, generator=g, dtype=torch.float64)
    ys = downsample(torch.rand(2, 3, 32, 24, generator=g), 4).double()
    td = DownsampleTerm(ys, 4).to(torch.float64).with_objective("spectral")
    assert torch.allclose(td.loss(hr), _direct_dft_modulus_mean(downsample(hr, 4) - ys),
                          rtol=1e-10)
    # squared and summed it would be the pixel MSE (Parseval): the objective is not that
    assert not torch.allclose(t.loss(x), IdentityTerm(y).loss(x))
    assert torch.allclose((torch.fft.fft2(x - y, norm="ortho").abs() ** 2).flatten(1).mean(1),
                          IdentityTerm(y).loss(x))
    with pytest.raises(ValueError, match="unknown loss"):
        IdentityTerm(y).with_objective("l1")


def test_spectral_loss_gradient_by_finite_differences():
    g = torch.Generator().manual_seed(6)
    y = torch.rand(1, 2, 6, 8, generator=g).double()
    x = torch.rand(1, 2, 6, 8, generator=g, dtype=torch.float64, requires_grad=True)
    mask = torch.from_numpy(bernoulli_mask(6, 8, 0.5, seed=1))[None].double()
    for term in (IdentityTerm(y), MaskedTerm(y, mask)):
        t = term.to(torch.float64).with_objective("spectral")
        assert torch.autograd.gradcheck(lambda v: t.loss(v), (x,), eps=1e-6, atol=1e-7)


def test_the_objective_survives_a_holdout_and_counts_only_fitted_pixels():
    g = torch.Generator().manual_seed(7)
    y = torch.rand(1, 3, 16, 16, generator=g)
    t = IdentityTerm(y).with_objective("spectral").with_holdout(0.25, seed=0)
    assert t.objective == "spectral"
    x = torch.rand(1, 3, 16, 16, generator=g, requires_grad=True)
    t.loss(x).sum().backward()
    held = t.holdout.expand_as(x).bool()
    assert torch.all(x.grad[held] == 0) and torch.any(x.grad[~held] != 0)


@pytest.mark.parametrize("masked", [False, True])
def test_the_monitors_count_the_pixels_of_the_image_not_its_padding(masked):
    # with held-out pixels the padding leaves the loss: a net is free to put anything there, so
    # the PSNR to the observation and the collapse measure must not see it (a 24×24 image
    # padded to 64×64 read 1.8 dB, and saturated, where the image itself was fitted to 28 dB)
    g = torch.Generator().manual_seed(3)
    y = torch.rand(1, 3, 64, 64, generator=g) * 0.5 + 0.25
    known = torch.from_numpy(bernoulli_mask(64, 64, 0.5, 0)[None].astype(np.float32))
    term = MaskedTerm(y, known) if masked else IdentityTerm(y)
    t = term.with_holdout(0.05, seed=0, region=(24, 24))
    out = y.clone()
    out[..., 24:, :] = 0.0          # the padding drifted to 0, the image itself is exact
    out[..., :, 24:] = 1.0
    assert torch.isinf(t.psnr_of(out)).all()
    assert float(t.saturation(out)[0]) == 0.0
    assert float(t.pixel_loss(out)[0]) == 0.0
    out[..., :24, :24] = 0.0        # the image collapsed, the padding not
    out[..., 24:, 24:] = 0.5
    assert float(t.saturation(out)[0]) == 1.0
    # without held-out pixels the padding (a mirror of the image) is fitted and measured
    assert 0 < float(term.saturation(out)[0]) < 1
