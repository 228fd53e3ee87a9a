"""models/: parameter counts, the Lipschitz bound, Gaussian kernels, shapes, per-sample norms."""
import pytest
import torch

from models import (GaussianUpsample, LipschitzBatchNorm2d, LipschitzConv2d, MeanOnlyNorm,
                    build_net, code_shape, count_parameters, grouped_sigmas, make_input,
                    sigma_max, spectral_norms)
from models.layers import OutputConv2d, SampleBatchNorm2d, centred_conv


def tiny(name="decoder", **kw):
    if name == "hourglass":
        kw = dict(channels_down=8, channels_up=8, channels_skip=2, scales=3, **kw)
    else:
        kw = dict(channels=8, **kw)
    return build_net(name, 4, 3, **kw)


@pytest.mark.parametrize("name,out,kw,count", [
    ("decoder", 3, {}, 1_662_339),
    ("decoder", 1, {}, 1_662_081),
    ("decoder", 3, {"upsample": "gaussian"}, 1_662_339),  # fixed kernels are not trainable
    ("hourglass", 3, {"norm": "batch"}, 2_217_831),
])
def test_parameter_counts(name, out, kw, count):
    assert count_parameters(build_net(name, 32, out, **kw)) == count


@pytest.mark.parametrize("norm", ["mean_only", "batch", "lipschitz_batch", "none"])
def test_lipschitz_bound_holds_after_training(norm):
    torch.manual_seed(0)
    lam = 1.2
    net = tiny(ln_lambda=lam, norm=norm)
    z = make_input("fourier", 4, 2, 2, var=1)
    target = torch.rand(1, 3, 64, 64)
    opt = torch.optim.Adam(net.parameters(), lr=0.1)
    for _ in range(20):
        opt.zero_grad()
        ((net(z) - target) ** 2).mean().backward()
        opt.step()
    norms = spectral_norms(net)
    assert len(norms) == 12  # 2 + 5·2 controlled 3×3 convs; the 1×1 head is not controlled
    assert max(norms.values()) <= lam + 1e-5
    # lr 0.1 makes the raw weights large: the bound must be active, not vacuous
    raw = [sigma_max(m.weight.flatten(1)) for m in net.modules()
           if isinstance(m, LipschitzConv2d) and m.controlled]
    assert max(float(s) for s in raw) > lam


def test_small_layer_left_unchanged_and_no_gradient_through_sigma():
    conv = LipschitzConv2d(3, 4, 3, ln_lambda=100.0)
    assert torch.equal(conv.effective_weight(), conv.weight)
    conv.ln_lambda = 0.01
    w = conv.effective_weight().detach()
    s = float(torch.linalg.svdvals(w.flatten(1))[0])
    assert abs(s - 0.01) < 1e-6
    # σ is a constant in the backward pass: dW_eff/dW = 1/scale exactly
    conv.weight.grad = None
    conv.effective_weight().sum().backward()
    scale = float(sigma_max(conv.weight.flatten(1))) / 0.01
    assert torch.allclose(conv.weight.grad, torch.full_like(conv.weight, 1 / scale))


def test_per_layer_lambdas_and_uncontrolled():
    lams = [1.0 + 0.1 * i for i in range(12)]
    net = tiny(ln_lambda=lams)
    convs = [m for m in net.modules() if isinstance(m, LipschitzConv2d)]
    assert [m.ln_lambda for m in convs] == pytest.approx(lams)
    assert spectral_norms(tiny(ln_lambda=None)) == {}
    assert spectral_norms(tiny(ln_lambda=0)) == {}
    with pytest.raises(ValueError, match="12 controlled"):
        tiny(ln_lambda=[1.0, 2.0])


def test_sigma_methods_agree():
    torch.manual_seed(0)
    for shape in [(5, 128, 1152), (3, 40, 9), (2, 4, 36)]:
        w = torch.randn(shape)
        assert torch.allclose(sigma_max(w, "eigvalsh"), sigma_max(w, "svdvals"), rtol=1e-5)


@pytest.mark.parametrize("sigma,row", [
    (0.5, [0.021938, 0.09832, 0.162103, 0.09832, 0.021938]),
    (1.0, [0.038328, 0.055766, 0.063191, 0.055766, 0.038328]),
])
def test_gaussian_kernel_values(sigma, row):
    k = GaussianUpsample(2, sigma).kernel
    assert k.shape == (2, 1, 5, 5)
    assert torch.allclose(k[1, 0, 2], torch.tensor(row), atol=1e-6)
    assert abs(float(k[0, 0].sum()) - 1) < 1e-6


def test_gaussian_gain_and_zero_insertion():
    k = GaussianUpsample(1, 0.1).kernel
    assert abs(float(k[0, 0, 2, 2]) - 0.999985) < 1e-6
    ones = torch.ones(1, 1, 16, 16)
    up = GaussianUpsample(1, 0.5)(ones)
    assert up.shape == (1, 1, 32, 32)
    interior = up[..., 4:-4, 4:-4]  # away from the transposed-conv border
    assert abs(float(interior.mean()) - 0.25) < 1e-6
    unit = GaussianUpsample(1, 0.5, gain="unit")(ones)[..., 4:-4, 4:-4]
    assert abs(float(unit.mean()) - 1.0) < 1e-6
    assert not any(p.requires_grad for p in GaussianUpsample(3, 0.5).parameters())


@pytest.mark.parametrize("name", ["decoder", "hourglass", "convnet"])
@pytest.mark.parametrize("size", [(32, 32), (64, 96)])
def test_output_shapes(name, size):
    net = tiny(name)
    h, w = code_shape(net, *size)
    out = net(make_input("noise", 4, h, w)).detach()
    assert out.shape == (1, 3, *size)
    assert 0 <= float(out.min()) and float(out.max()) <= 1


@pytest.mark.parametrize("upsample", ["nearest", "bilinear", "deconv", "gaussian"])
def test_every_upsampling_mode(upsample):
    net = tiny(upsample=upsample)
    assert net(make_input("fourier", 4, 1, 1)).shape == (1, 3, 32, 32)


@pytest.mark.parametrize("name", ["decoder", "hourglass"])
def test_size_not_multiple_raises(name):
    net = tiny(name)
    with pytest.raises(ValueError, match="100x90"):
        code_shape(net, 90, 100)
    if name == "hourglass":
        with pytest.raises(ValueError, match="36x36"):
            net(torch.rand(1, 4, 36, 36))


@pytest.mark.parametrize("norm", [MeanOnlyNorm(4), SampleBatchNorm2d(4),
                                  LipschitzBatchNorm2d(4, 0.5)])
def test_norms_are_per_sample(norm):
    x = torch.randn(2, 4, 8, 8)
    y0 = norm(x)[0]
    x[1] = torch.randn(4, 8, 8) * 10 + 3
    assert torch.equal(norm(x)[0], y0)


@pytest.mark.parametrize("name", ["decoder", "hourglass"])
@pytest.mark.parametrize("norm", ["mean_only", "batch", "lipschitz_batch"])
def test_whole_net_per_sample(name, norm):
    net = tiny(name, norm=norm, ln_lambda=1.4)
    z = torch.rand(2, 4, 32, 32) if name == "hourglass" else torch.rand(2, 4, 1, 1)
    y0 = net(z)[0]
    z[1] = torch.rand_like(z[1])
    assert torch.allclose(net(z)[0], y0, atol=1e-6)


def test_lipschitz_batch_norm_bound():
    bn = LipschitzBatchNorm2d(3, norm_lambda=0.5)
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([4.0, -6.0, 0.1]))
    x = torch.randn(1, 3, 16, 16)
    var = x.var(dim=(2, 3), correction=0)
    gamma = bn._scale(var.view(1, 3, 1, 1)).view(3)
    lip = (gamma.abs() / torch.sqrt(var.view(3) + bn.eps)).max()
    assert float(lip.detach()) <= 0.5 + 1e-6


@pytest.mark.parametrize("name", ["decoder", "hourglass"])
def test_grouped_sigmas_are_handed_to_the_convs(name):
    """DIPNet computes σ_max once per weight shape and hands each conv its own value: the same
    output as every conv computing its own σ (the body run without the table)."""
    torch.manual_seed(0)
    net = tiny(name, ln_lambda=0.9)
    z = torch.rand(1, 4, 64, 64) if name == "hourglass" else make_input("fourier", 4, 2, 2)
    convs = [m for m in net.lipschitz_layers() if m.controlled]
    table = grouped_sigmas(convs, "svdvals")
    assert len(table) == len(convs) > 0
    for m in convs:
        assert torch.allclose(table[m], torch.linalg.svdvals(m.weight.flatten(1))[0], rtol=1e-5)
    with torch.no_grad():
        assert torch.allclose(net(z), net.body(z), atol=1e-6)


def test_sigma_method_is_a_net_option():
    net = tiny(sigma_method="svdvals")
    assert net.sigma_method == "svdvals"
    assert {m.sigma_method for m in net.lipschitz_layers()} == {"svdvals"}
    assert tiny().sigma_method == "auto"  # the fastest exact method on the device
    with pytest.raises(ValueError, match="sigma method"):
        tiny(sigma_method="power_iteration")


@pytest.mark.parametrize("name", ["decoder", "hourglass", "convnet"])
def test_gradients_reach_every_parameter(name):
    net = tiny(name, ln_lambda=1.0, upsample="gaussian" if name != "convnet" else "bilinear",
               gaussian_sigmas=(0.1, 0.5, 0.5) if name == "hourglass" else (0.1,) * 5)
    # a 2×2 code at least: a 1×1 map is constant, so mean removal zeroes the first block
    z = torch.rand(1, 4, 32, 32) if name != "decoder" else torch.rand(1, 4, 2, 2)
    net(z).square().mean().backward()
    for n, p in net.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, n


def test_same_seed_same_output_and_state_dict_round_trip():
    outs = []
    for _ in range(2):
        torch.manual_seed(3)
        net = tiny(ln_lambda=1.4)
        z = make_input("fourier", 4, 1, 1, var=1, generator=torch.Generator().manual_seed(5))
        outs.append(net(z))
    assert torch.equal(outs[0], outs[1])
    other = tiny(ln_lambda=1.4)
    other.load_state_dict(net.state_dict())
    assert torch.equal(other(z), outs[1])


def test_make_input_kinds():
    g = torch.Generator().manual_seed(0)
    f = make_input("fourier", 32, 4, 6, var=1, generator=g)
    assert f.shape == (1, 32, 4, 6)
    assert torch.allclose(f[:, :16] ** 2 + f[:, 16:] ** 2, torch.ones(1, 16, 4, 6), atol=1e-6)
    n = make_input("noise", 3, 5, 5, var=0.1)
    assert 0 <= float(n.min()) and float(n.max()) < 0.1
    m = make_input("meshgrid", 2, 3, 5)
    assert m[0, 0, 0].tolist() == pytest.approx([0, 0.25, 0.5, 0.75, 1])
    assert m[0, 1, :, 0].tolist() == pytest.approx([0, 0.5, 1])
    with pytest.raises(ValueError):
        make_input("fourier", 3, 2, 2)


def test_sigma_auto_and_autocast():
    torch.manual_seed(1)
    w = torch.randn(4, 64, 576)
    ref = sigma_max(w, "svdvals")
    assert torch.allclose(sigma_max(w, "auto"), ref, rtol=1e-5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.allclose(sigma_max(w, "eigvalsh"), ref, rtol=1e-5)
    with pytest.raises(ValueError, match="power"):
        sigma_max(w, "power")


@pytest.mark.parametrize("name,kw", [("decoder", {}), ("decoder", {"upsample": "gaussian"}),
                                     ("decoder", {"upsample": "deconv"}), ("hourglass", {})])
def test_under_bf16_autocast_only_the_convolutions_run_in_bf16(name, kw):
    """Every conv's output (and the net's) keeps its fp32 input's precision, so that the
    mean-only norm and the elementwise layers run in fp32; the convolutions themselves in bf16
    (the output differs from the fp32 net's, by bf16's rounding only)."""
    torch.manual_seed(0)
    net = tiny(name, **kw)
    z = make_input("noise", 4, *code_shape(net, 64, 64))
    seen = []
    hooks = [m.register_forward_hook(lambda m, i, o: seen.append((type(m).__name__, o.dtype)))
             for m in net.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d,
                                                      GaussianUpsample, MeanOnlyNorm))]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = net(z)
    for h in hooks:
        h.remove()
    assert out.dtype == torch.float32 and seen
    assert all(dtype == torch.float32 for _, dtype in seen), seen
    ref = net(z)
    assert 0 < (out - ref).abs().max() < 0.05


def test_mean_only_norm_centres_with_the_two_term_gradient():
    """The one-operation centring has the value and the gradient of x − mean(x), also per member
    under vmap (the batched fits)."""
    from torch.func import functional_call, stack_module_state, vmap
    torch.manual_seed(0)
    norm = MeanOnlyNorm(3).double()
    norm.bias.data.normal_()
    x = torch.randn(2, 3, 5, 4, dtype=torch.double, requires_grad=True)
    y = norm(x)
    ref = x - x.mean(dim=(2, 3), keepdim=True) + norm.bias.view(1, -1, 1, 1)
    assert torch.allclose(y, ref)
    g = torch.randn_like(y)
    got, = torch.autograd.grad(y, x, g)
    want, = torch.autograd.grad(ref, x, g)
    assert torch.allclose(got, want)
    assert torch.autograd.gradcheck(norm, (x,))
    nets = [MeanOnlyNorm(3).double() for _ in range(2)]
    for n in nets:
        n.bias.data.normal_()
    params, buffers = stack_module_state(nets)
    batched = vmap(lambda p, b, v: functional_call(nets[0], (p, b), (v[None],))[0])
    out = batched(params, buffers, x)
    for m, n in enumerate(nets):
        assert torch.allclose(out[m], n(x[m:m + 1])[0])


@pytest.mark.parametrize("stride,k", [(1, 3), (2, 3), (1, 1)])
def test_the_centred_conv_is_the_conv_with_its_gradients(stride, k):
    """conv(x − μ) + (Σ w) μ + b is conv(x) + b, in value and in the gradients of x, w and b
    (reflection padding and a 1×1 conv map a constant map to a constant, at any stride)."""
    torch.manual_seed(0)
    conv = LipschitzConv2d(3, 4, k, stride=stride).double()
    x = (5 + torch.randn(2, 3, 9, 8, dtype=torch.double)).requires_grad_()
    fn = lambda v, w: conv._conv_forward(v, w, None)          # noqa: E731
    got = centred_conv(fn, x, conv.weight, conv.bias)
    ref = conv._conv_forward(x, conv.weight, conv.bias)
    assert torch.allclose(got, ref, atol=1e-12)
    g = torch.randn_like(ref)
    params = (x, conv.weight, conv.bias)
    for a, b in zip(torch.autograd.grad(got, params, g), torch.autograd.grad(ref, params, g)):
        assert torch.allclose(a, b, atol=1e-10)


def test_under_bf16_autocast_a_map_with_a_large_mean_keeps_what_varies():
    """Under bf16 autocast a reflection-padded conv is centred, and the 1×1 output conv runs in
    fp32: on a map that is its mean plus little, their error to fp32 is a fraction of the plain
    bf16 conv's; under fp32 nothing changes."""
    torch.manual_seed(0)
    conv, head = LipschitzConv2d(8, 8, 3), OutputConv2d(8, 3, 1)
    x = 4 + 0.01 * torch.randn(1, 8, 16, 16)
    for layer in (conv, head):
        ref = layer(x)                                    # fp32: the plain conv, as before
        assert torch.equal(ref, torch.nn.Conv2d.forward(layer, x) if layer is head
                           else layer._conv_forward(x, layer.weight, layer.bias))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            got = layer(x)
            plain = torch.nn.functional.conv2d(torch.nn.functional.pad(
                x, [layer.padding[0]] * 4, mode="reflect"), layer.weight, layer.bias)
        assert got.dtype == torch.float32 and plain.dtype == torch.bfloat16
        err, err_plain = ((got - ref).abs().max(), (plain.float() - ref).abs().max())
        assert err < err_plain / 10, (err, err_plain)
