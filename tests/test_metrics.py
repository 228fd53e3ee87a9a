import math

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from utils.metrics import psnr, psnr_b, rgb_to_y, rgb_to_ycbcr, ssim, y_psnr, ycbcr_to_rgb


def test_psnr_hand_example():
    x = torch.zeros(1, 1, 2, 2)
    y = torch.tensor([[[[0.1, 0.0], [0.0, 0.3]]]])
    mse = (0.01 + 0.09) / 4
    assert torch.allclose(psnr(x, y), torch.tensor([10 * math.log10(1 / mse)]), atol=1e-4)
    # (C,H,W) input and data_range
    assert psnr(x[0], y[0]).shape == (1,)
    assert torch.allclose(psnr(x * 255, y * 255, data_range=255.0), psnr(x, y), atol=1e-4)


def test_psnr_masked_and_batched():
    x = torch.zeros(2, 3, 2, 2)
    y = torch.zeros(2, 3, 2, 2)
    y[:, :, 0, 0] = 0.5      # error only at a masked-out pixel
    y[:, :, 1, 1] = 0.1
    m = torch.ones(1, 1, 2, 2)
    m[..., 0, 0] = 0
    mse = 0.01 / 3           # 3 counted pixels per channel, one of them wrong
    out = psnr(x, y, mask=m)
    assert out.shape == (2,)
    assert torch.allclose(out, torch.full((2,), 10 * math.log10(1 / mse)), atol=1e-4)
    # a per-member mask (B,1,H,W)
    m2 = torch.ones(2, 1, 2, 2)
    m2[1, :, 0, 0] = 0
    out2 = psnr(x, y, mask=m2)
    assert torch.allclose(out2[0], psnr(x, y)[0]) and torch.allclose(out2[1], out[1])


@pytest.mark.parametrize("channels", [1, 3])
def test_ssim_matches_skimage(channels):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, channels, 48, 41, generator=g)
    y = (x + 0.15 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    ours = ssim(x, y)
    for b in range(2):
        kw = dict(gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1)
        if channels == 1:
            ref = structural_similarity(x[b, 0].double().numpy(), y[b, 0].double().numpy(), **kw)
        else:
            ref = structural_similarity(x[b].double().numpy(), y[b].double().numpy(), channel_axis=0, **kw)
        assert abs(ours[b].item() - ref) < 1e-4
    assert torch.allclose(ssim(x, x), torch.ones(2), atol=1e-6)


def test_ycbcr_known_values_and_round_trip():
    white, black = torch.ones(1, 3, 1, 1), torch.zeros(1, 3, 1, 1)
    assert abs(rgb_to_y(white).item() - 235 / 255) < 1e-6
    assert abs(rgb_to_y(black).item() - 16 / 255) < 1e-6
    ycc = rgb_to_ycbcr(white).flatten()
    assert torch.allclose(ycc[1:], torch.full((2,), 128 / 255), atol=1e-5)  # grey: neutral chroma
    x = torch.rand(2, 3, 9, 7, generator=torch.Generator().manual_seed(1))
    assert (ycbcr_to_rgb(rgb_to_ycbcr(x)) - x).abs().max() < 1e-5
    assert rgb_to_y(x).shape == (2, 1, 9, 7)


def test_y_psnr_hand_numpy():
    rs = np.random.RandomState(0)
    a, b = rs.rand(3, 20, 18), rs.rand(3, 20, 18)

    def y(img):
        return (65.481 * img[0] + 128.553 * img[1] + 24.966 * img[2] + 16) / 255

    ya, yb = y(a)[4:-4, 4:-4], y(b)[4:-4, 4:-4]
    ref = 10 * np.log10(1 / np.mean((ya - yb) ** 2))
    out = y_psnr(torch.tensor(a[None]), torch.tensor(b[None]), border=4)
    assert abs(out.item() - ref) < 1e-6
    # grayscale: used as is
    g1, g2 = a[:1], b[:1]
    ref_g = 10 * np.log10(1 / np.mean((g1[0, 2:-2, 2:-2] - g2[0, 2:-2, 2:-2]) ** 2))
    assert abs(y_psnr(torch.tensor(g1), torch.tensor(g2), border=2).item() - ref_g) < 1e-6
    assert abs(y_psnr(torch.tensor(g1), torch.tensor(g2), border=0).item()
               - psnr(torch.tensor(g1), torch.tensor(g2)).item()) < 1e-9


def _bef_hand(img, B=8):
    """Straight loops over every adjacent pair (Yim & Bovik 2011)."""
    H, W = img.shape
    sb = sc = 0.0
    nb = nc = 0
    for i in range(H):
        for j in range(W - 1):  # horizontal pair (j, j+1)
            d = (img[i, j] - img[i, j + 1]) ** 2
            if (j + 1) % B == 0:
                sb, nb = sb + d, nb + 1
            else:
                sc, nc = sc + d, nc + 1
    for i in range(H - 1):
        for j in range(W):
            d = (img[i, j] - img[i + 1, j]) ** 2
            if (i + 1) % B == 0:
                sb, nb = sb + d, nb + 1
            else:
                sc, nc = sc + d, nc + 1
    assert nb == H * (W // B - 1) + W * (H // B - 1)  # the paper's N_HB + N_VB
    db, dbc = sb / nb, sc / nc
    eta = np.log2(B) / np.log2(min(H, W)) if db > dbc else 0.0
    return eta * (db - dbc)


def test_psnr_b_hand_16x16():
    rs = np.random.RandomState(3)
    ref = rs.rand(16, 16) * 0.2 + 0.4
    blocks = np.kron(rs.rand(2, 2), np.ones((8, 8)))         # 4 flat 8x8 blocks
    test = np.clip(0.8 * blocks + 0.2 * rs.rand(16, 16) * 0.1, 0, 1)
    bef = _bef_hand(test)
    assert bef > 0
    mse = np.mean((test - ref) ** 2)
    expect = 10 * np.log10(1 / (mse + bef))
    out = psnr_b(torch.tensor(test)[None, None], torch.tensor(ref)[None, None])
    assert abs(out.item() - expect) < 1e-9
    assert out.item() < psnr(torch.tensor(test)[None, None], torch.tensor(ref)[None, None]).item()


def test_psnr_b_equals_psnr_without_blocking():
    rs = np.random.RandomState(4)
    ref = torch.tensor(rs.rand(2, 3, 24, 32))
    # uniform image: every difference is zero -> D_B = D_B^c -> BEF = 0
    flat = torch.full_like(ref, 0.3)
    assert torch.allclose(psnr_b(flat, ref), psnr(flat, ref))
    # textured image that is continuous across block boundaries (each boundary pair
    # duplicated): D_B = 0 < D_B^c -> BEF = 0
    tex = torch.tensor(rs.rand(2, 3, 24, 32))
    tex[..., :, 8::8] = tex[..., :, 7:-1:8]
    tex[..., 8::8, :] = tex[..., 7:-1:8, :]
    assert torch.allclose(psnr_b(tex, ref), psnr(tex, ref))

def test_psnr_b_lower_for_blocky_rgb():
    rs = np.random.RandomState(5)
    ref = torch.tensor(rs.rand(1, 3, 32, 32)) * 0.1 + 0.45
    blocky = torch.tensor(np.kron(rs.rand(1, 3, 4, 4), np.ones((8, 8))))
    assert psnr_b(blocky, ref).item() < psnr(blocky, ref).item() - 0.1
    # per-channel BEF averaged over channels
    bef_c = [_bef_hand(blocky[0, c].numpy()) for c in range(3)]
    mse = ((blocky - ref) ** 2).mean().item()
    assert abs(psnr_b(blocky, ref).item() - 10 * np.log10(1 / (mse + np.mean(bef_c)))) < 1e-9
