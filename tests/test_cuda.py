"""First contact with CUDA (``pytest -m cuda tests``, a GPU lease's first step: paper/lease.py):
the pieces a paper run relies on give on the GPU what they give on the CPU.  Seconds in all;
skipped without a GPU (tests/conftest.py)."""
import numpy as np
import pytest
import torch
from skimage import data

from models import build_net, make_input
from models.layers import GaussianUpsample, lipschitz_convs, sigma_max
from utils.fit import FitConfig, fit
from utils.metrics import psnr
from utils.physics import IdentityTerm, add_gaussian_noise

pytestmark = pytest.mark.cuda


def crop(size=64):
    a = data.chelsea()[40:40 + size, 100:100 + size].astype(np.float32) / 255
    return torch.from_numpy(a).permute(2, 0, 1)[None].contiguous()


def net_and_code(seed=0, channels=16):
    torch.manual_seed(seed)
    net = build_net("decoder", 8, 3, channels=channels, ln_lambda=1.4)
    z = make_input("fourier", 8, 2, 2, var=1, generator=torch.Generator().manual_seed(seed))
    return net, z


def test_sigma_max_methods_agree_on_cuda():
    w = torch.randn(6, 128, 128 * 9, generator=torch.Generator().manual_seed(0))
    ref = sigma_max(w, "svdvals")
    for method in ("svdvals", "eigvalsh"):
        torch.testing.assert_close(sigma_max(w.cuda(), method).cpu(), ref, rtol=1e-5, atol=0)


def test_decoder_forward_matches_the_cpu_in_strict_fp32():
    net, z = net_and_code()
    cpu = net(z)
    old = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    try:
        gpu = net.cuda()(z.cuda()).cpu()
    finally:
        torch.backends.cudnn.allow_tf32 = old
    torch.testing.assert_close(gpu, cpu, rtol=1e-4, atol=1e-5)


def test_gaussian_upsampling_matches_the_cpu():
    up = GaussianUpsample(4, 0.5)
    x = torch.rand(1, 4, 16, 16)
    cpu = up(x)     # before .cuda(), which moves the module itself
    old = torch.backends.cudnn.allow_tf32   # strict fp32: TF32 rounds at 1e-3 relative
    torch.backends.cudnn.allow_tf32 = False
    try:
        gpu = up.cuda()(x.cuda()).cpu()
    finally:
        torch.backends.cudnn.allow_tf32 = old
    torch.testing.assert_close(gpu, cpu, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("amp", ["none", "bf16"])
def test_fit_on_cuda_denoises_and_holds_the_bound(amp):
    x = crop()
    y = add_gaussian_noise(x, 25, seed=0)
    net, z = net_and_code(channels=32)
    cfg = FitConfig(iters=150, lr=0.002, quiet=True, stop="none", log_every=10, amp=amp,
                    device="cuda")
    res = fit(net, z, IdentityTerm(y), cfg, target=x)
    assert res.device == torch.cuda.get_device_name()
    assert float(psnr(res.output.cpu(), x)[0]) > float(psnr(y, x)[0]) + 1.0
    for _, conv in lipschitz_convs(net):   # W_eff = W / max(1, σ/λ): σ(W_eff) ≤ λ
        w = conv.effective_weight().detach().flatten(1)
        assert float(sigma_max(w, "svdvals")) <= 1.4 * (1 + 1e-4)


def test_batched_members_on_cuda_are_independent():
    x = crop().cuda()
    other = torch.rand_like(x)
    codes = torch.cat([net_and_code(0)[1], net_and_code(1)[1]]).cuda()
    cfg = FitConfig(iters=10, lr=0.001, quiet=True, stop="none", device="cuda", tf32=False)
    nets = lambda: [net_and_code(0)[0], net_and_code(1)[0]]   # noqa: E731
    a = fit(nets(), codes, IdentityTerm(torch.cat([x, x])), cfg)
    b = fit(nets(), codes, IdentityTerm(torch.cat([x, other])), cfg)
    # cuDNN's autotuner may pick other kernels in the two fits, and some backward kernels
    # accumulate atomically: equal within their rounding
    torch.testing.assert_close(a.last_output[0], b.last_output[0], rtol=0, atol=1e-4)
    assert (a.last_output[1] - b.last_output[1]).abs().max() > 1e-3
