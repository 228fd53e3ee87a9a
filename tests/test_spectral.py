import numpy as np
import pytest
import torch

from utils.spectral import frequency_band_correspondence as fbc


def _fbc_numpy(out, tgt, bands=5):
    """Straight transcription of the definition (full fft2 + fftshift, float64)."""
    def gray(x):
        x = x.numpy().astype(np.float64)
        x = 0.2989 * x[0] + 0.5870 * x[1] + 0.1140 * x[2] if x.shape[0] == 3 else x[0]
        return np.clip(x, 0, 1)
    f = lambda x: np.abs(np.fft.fftshift(np.fft.fft2(gray(x))))
    h = np.clip(f(out) / (f(tgt) + 1e-8), 0, 1)
    H, W = h.shape
    yy, xx = np.mgrid[:H, :W]
    d = np.sqrt((xx - W // 2) ** 2 + (yy - H // 2) ** 2)
    radii = [-1] + list(W // 2 * np.linspace(0.2, 1, bands))
    return np.array([h[(d > lo) & (d <= hi)].mean() for lo, hi in zip(radii[:-1], radii[1:])])


def test_reference_values(imgs):
    a, n, b = imgs["astronaut"], imgs["noisy"], imgs["blur2"]
    cases = [((a, a), [1, 1, 1, 1, 1]),
             ((b, a), [0.7126, 0.2635, 0.1433, 0.1322, 0.1324]),
             ((a, n), [0.9581, 0.8452, 0.7065, 0.5655, 0.4450])]
    for (o, t), ref in cases:
        got = fbc(o, t)
        assert got.shape == (1, 5) and got.dtype == torch.float32
        np.testing.assert_allclose(got[0].numpy(), ref, atol=1e-3)


@pytest.mark.parametrize("shape", [(3, 64, 64), (3, 37, 50), (1, 50, 37), (3, 33, 33)])
def test_matches_numpy_definition_odd_sizes(shape):
    # rfft folding and ring layout must hold for odd/even and non-square sizes
    g = torch.Generator().manual_seed(0)
    o, t = torch.rand(shape, generator=g), torch.rand(shape, generator=g)
    for bands in (3, 5):
        np.testing.assert_allclose(fbc(o, t, bands)[0].numpy(), _fbc_numpy(o, t, bands), atol=1e-5)


def test_batch_equals_single_and_broadcast_target(imgs):
    a = imgs["astronaut"][:, ::2, ::2]
    outs = torch.stack([a, imgs["noisy"][:, ::2, ::2], imgs["blur2"][:, ::2, ::2], a.flip(-1)])
    batched = fbc(outs, a[None].expand(4, -1, -1, -1))
    single = torch.cat([fbc(o, a) for o in outs])
    torch.testing.assert_close(batched, single, atol=1e-6, rtol=0)
    torch.testing.assert_close(fbc(outs, a[None]), batched, atol=1e-6, rtol=0)


def test_float64_and_cache_reuse(imgs):
    a = imgs["astronaut"][:, ::4, ::4]
    r32 = fbc(a, a.flip(-2))
    r64 = fbc(a.double(), a.flip(-2).double())
    assert r64.dtype == torch.float64
    torch.testing.assert_close(r64.float(), r32, atol=1e-5, rtol=0)
    torch.testing.assert_close(fbc(a, a.flip(-2)), r32)


def test_shape_mismatch_raises():
    with pytest.raises(ValueError, match=r"\(3, 32, 32\).*\(3, 32, 48\)"):
        fbc(torch.rand(3, 32, 32), torch.rand(3, 32, 48))
    with pytest.raises(ValueError, match=r"\(2, 3, 32, 32\).*\(3, 3, 32, 32\)"):
        fbc(torch.rand(2, 3, 32, 32), torch.rand(3, 3, 32, 32))


@pytest.mark.cuda
def test_cuda_agrees_and_no_sync(imgs):
    o = torch.stack([imgs["blur2"], imgs["noisy"]])
    t = imgs["astronaut"][None]
    cpu = fbc(o, t)
    oc, tc = o.cuda(), t.cuda()
    torch.cuda.set_sync_debug_mode("error")  # the first call also builds the ring cache
    try:
        gpu = fbc(oc, tc)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-5, rtol=0)
