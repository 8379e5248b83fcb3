"""The proxy registry (docs/proxies.md): each proxy against an independent brute-force computation
on a tiny network in float64, zero-cost-nas's definitions re-derived on identical weights,
determinism, the controls, and scoring with every proxy (shard invariance, Table 1 untouched).

The brute forces use none of blockswap.search.proxies' helpers: their own hooks, per-example and per-pair
loops, explicit Jacobians, finite differences, numpy's linear algebra."""

import copy
import math
import zlib

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from blockswap import CANDIDATE_SETS, BlockswapError, Genotype, build_model, parse_arch
from blockswap.data.loaders import load_dataset
from blockswap.search.measure import measure_along_training
from blockswap.search.proxies import FLOOR, PROXIES, parse_proxies, stored_value
from blockswap.search.proxies.activation import RELU_CALLS, relu_kernel
from blockswap.search.proxies.base import Measurement
from blockswap.search.proxies.candidate import measure_candidate
from blockswap.search.sampling import CostTable, sample_candidates
from blockswap.search.score_files import is_timing
from blockswap.search.scoring import ScoringSettings, score_candidates
from blockswap.search.selection import read_scores
from blockswap.seeds import derive_seed

F64 = torch.float64
MIXED = "S G(N/4) B(2)"  # a plain, a grouped (conv-BN-ReLU-conv unit) and a bottleneck block
SEED, CANDIDATE = 3, 7


def tiny(genotype=MIXED, seed=0, n=6, dtype=F64):
    genotype = " ".join([genotype] * 3) if genotype == "S" else genotype
    model = build_model("wrn-10-1", Genotype.parse(genotype), seed=seed).to(dtype)
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(n, 3, 8, 8, generator=g, dtype=F64).to(dtype)
    labels = torch.randint(0, 10, (n,), generator=g)
    return model, images, labels


def run(name, model, images, labels, **kw):
    """The registry's compute on its own copy, as scoring gives it."""
    m = Measurement(copy.deepcopy(model).train(), images, labels, seed=SEED, candidate=CANDIDATE, **kw)
    return PROXIES[name].compute(m)


def conv_linear(model):
    return [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def weight_grads(model, images, labels):
    """dL/dW of every conv/linear weight by plain .backward() on a fresh copy (train-mode BN)."""
    model = copy.deepcopy(model).train()
    model.zero_grad()
    F.cross_entropy(model(images), labels).backward()
    return [layer.weight.detach().clone() for layer in conv_linear(model)], [
        layer.weight.grad.clone() for layer in conv_linear(model)
    ]


# --- registry -----------------------------------------------------------------------------------


def test_every_entry_states_what_it_needs():
    assert {
        "fisher",
        "accuracy",
        "l2_norm",
        "grad_norm",
        "fisher_zc",
        "snip",
        "grasp",
        "plain",
        "grad_norm_zc",
        "synflow",
        "jacob_cov",
        "naswot",
        "zico",
        "zen",
        "meco",
        "params",
        "macs",
        "random",
    } <= set(PROXIES)
    for name, p in PROXIES.items():
        assert p.name == name and isinstance(p.higher_is_better, bool) and callable(p.compute_function())
        assert p.definition and p.source and p.dtype and "\n" not in p.definition
    assert not PROXIES["synflow"].labels and PROXIES["synflow"].batchnorm == "bypassed"
    assert PROXIES["grasp"].cost == "double-backward"


def test_unknown_proxy_is_one_line_naming_the_allowed():
    with pytest.raises(BlockswapError, match="unknown proxy 'nope'; allowed: fisher, accuracy") as err:
        parse_proxies(["snip", "nope"])
    assert "\n" not in str(err.value) and "synflow" in str(err.value)
    with pytest.raises(BlockswapError, match="unknown proxy"):
        ScoringSettings(arch="wrn-10-1", dataset="digits", num_classes=10, image_size=8, proxies=["fisher", "zen2"])
    assert [p.name for p in parse_proxies(["snip", "fisher", "snip"])] == ["fisher", "snip"]


# --- gradient proxies ---------------------------------------------------------------------------


@pytest.mark.parametrize("genotype", [MIXED, "S"])
def test_fisher_zc_against_channel_scales(genotype):
    """sum_hw a*g at a layer's output is dL/ds for a per-(example, channel) scale s = 1 multiplying
    it: one forward per layer with such a scale, then zero-cost-nas's broadcast of each channel's
    0.5 mean_n (dL/ds)^2 over weight.shape[1:], summed element by element."""
    model, images, labels = tiny(genotype)
    expected = 0.0
    for index in range(len(conv_linear(model))):
        net = copy.deepcopy(model).train()
        layer = conv_linear(net)[index]
        shape = (images.shape[0], layer.weight.shape[0]) + ((1, 1) if isinstance(layer, nn.Conv2d) else ())
        scale = torch.ones(shape, dtype=F64, requires_grad=True)
        handle = layer.register_forward_hook(lambda mod, inp, out, s=scale: out * s)
        (ds,) = torch.autograd.grad(F.cross_entropy(net(images), labels), scale)
        handle.remove()
        ds = ds.reshape(ds.shape[0], -1)
        for c in range(ds.shape[1]):
            delta = 0.5 * sum(float(ds[n, c]) ** 2 for n in range(ds.shape[0])) / ds.shape[0]
            expected += float(torch.full(layer.weight.shape[1:], delta, dtype=F64).sum())
    assert run("fisher_zc", model, images, labels) == pytest.approx(expected, rel=1e-9)


def masked_gradient(model, images, labels):
    """zero-cost-nas's SNIP derivation: every conv/linear weight W used as W * mask, mask = 1;
    returns (weights, dL/dmask)."""
    net = copy.deepcopy(model).train()
    names = [name for name, module in net.named_modules() if isinstance(module, (nn.Conv2d, nn.Linear))]
    params = dict(net.named_parameters())
    masks = {n: torch.ones_like(params[f"{n}.weight"], requires_grad=True) for n in names}
    replaced = {**params, **{f"{n}.weight": params[f"{n}.weight"].detach() * masks[n] for n in names}}
    loss = F.cross_entropy(torch.func.functional_call(net, replaced, (images,)), labels)
    grads = torch.autograd.grad(loss, [masks[n] for n in names])
    return [params[f"{n}.weight"].detach() for n in names], grads


def test_snip_and_plain_are_zero_cost_nas_mask_gradients():
    model, images, labels = tiny()
    _, mask_grads = masked_gradient(model, images, labels)
    assert run("snip", model, images, labels) == pytest.approx(sum(float(g.abs().sum()) for g in mask_grads), rel=1e-10)
    assert run("plain", model, images, labels) == pytest.approx(sum(float(g.sum()) for g in mask_grads), rel=1e-9)
    # ... and the mask gradient is theta * dL/dtheta, element by element (the plain definition).
    w, g = weight_grads(model, images, labels)
    for weight, grad, mask_grad in zip(w, g, mask_grads):
        assert torch.allclose(weight * grad, mask_grad, rtol=1e-10, atol=1e-18)


def test_grad_norm_zc_is_per_layer_norms_and_equals_table1_grad_norm():
    model, images, labels = tiny()
    _, grads = weight_grads(model, images, labels)
    expected = sum(math.sqrt(sum(float(x) ** 2 for x in g.flatten())) for g in grads)
    zc = run("grad_norm_zc", model, images, labels)
    assert zc == pytest.approx(expected, rel=1e-10)
    # Table 1's grad_norm sums the l2 norms of every weight tensor of dimension > 1: on these
    # networks exactly the conv and linear weights, so the two proxies coincide.
    assert {id(p) for p in model.parameters() if p.dim() > 1} == {id(m.weight) for m in conv_linear(model)}
    assert run("grad_norm", model, images, labels) == pytest.approx(zc, rel=1e-12)


def test_grasp_against_finite_difference_hessian_vector_product():
    """Hg by central differences of the gradient along g: (grad(theta + eps g) - grad(theta - eps g)) / 2 eps."""
    model, images, labels = tiny()
    weights, g = weight_grads(model, images, labels)
    # Small enough that no ReLU input crosses 0 (kinks are invisible to autograd), large enough for
    # float64: 1e-7 agrees with double backward to ~1e-9 (1e-5 is off by 8 %, 1e-9 by 4e-7).
    eps = 1e-7 / max(float(x.abs().max()) for x in g)

    def shifted(sign):
        net = copy.deepcopy(model)
        with torch.no_grad():
            for layer, direction in zip(conv_linear(net), g):
                layer.weight.add_(sign * eps * direction)
        return weight_grads(net, images, labels)[1]

    hg = [(p - m) / (2 * eps) for p, m in zip(shifted(+1), shifted(-1))]
    expected = sum(float((-w * h).sum()) for w, h in zip(weights, hg))
    assert run("grasp", model, images, labels) == pytest.approx(expected, rel=1e-6)


def test_zico_against_per_half_gradients():
    model, images, labels = tiny(n=8)
    halves = [weight_grads(model, images[:4], labels[:4])[1], weight_grads(model, images[4:], labels[4:])[1]]
    expected = 0.0
    for g1, g2 in zip(*halves):
        a, b = g1.flatten().numpy(), g2.flatten().numpy()
        total = 0.0
        for x, y in zip(a, b):
            std = np.std([x, y])  # population std, as ZiCo's numpy code
            if std != 0:
                total += np.mean([abs(x), abs(y)]) / std
        if total != 0:
            expected += math.log(total)
    assert run("zico", model, images, labels) == pytest.approx(expected, rel=1e-9)


# --- data-free proxies --------------------------------------------------------------------------


def chain(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1, bias=False),
        nn.BatchNorm2d(4),
        nn.ReLU(inplace=True),
        nn.Conv2d(4, 5, 3, padding=1, bias=False),
        nn.BatchNorm2d(5),
        nn.ReLU(inplace=True),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(5, 3, bias=False),
    ).double()


def test_synflow_is_log10_of_layers_times_output_on_a_chain():
    """Without BN, with |theta| and a positive input every ReLU passes everything, R is linear in
    each layer's weights, so sum_w theta dR/dtheta over a layer is R (Euler) and the score of a
    3-layer chain is 3 R. R by hand: the |theta| chain on an all-ones input, no BN."""
    net = chain()
    w1, w2, w3 = (m.weight.detach().abs() for m in conv_linear(net))
    x = torch.ones(1, 3, 5, 5, dtype=F64)
    r = F.linear(F.conv2d(F.conv2d(x, w1, padding=1), w2, padding=1).mean((2, 3)), w3).sum()
    value = run("synflow", net, x.repeat(4, 1, 1, 1), torch.zeros(4, dtype=torch.long))
    assert value == pytest.approx(math.log10(3 * float(r)), rel=1e-12)
    assert float(next(net.parameters()).detach().min()) < 0  # the network measured keeps its signs


def test_synflow_on_a_wrn_against_functional_abs_weights_and_identity_bn():
    model, images, labels = tiny()
    net = copy.deepcopy(model).eval()
    for bn in (m for m in net.modules() if isinstance(m, nn.BatchNorm2d)):
        bn.running_mean.zero_()
        bn.running_var.fill_(1 - bn.eps)  # eval BN at init (weight 1, bias 0) is then the identity
    params = {k: v.detach().abs().requires_grad_(True) for k, v in net.named_parameters()}
    out = torch.func.functional_call(net, params, (torch.ones(1, 3, 8, 8, dtype=F64),))
    names = [f"{name}.weight" for name, m in net.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    grads = torch.autograd.grad(out.sum(), [params[n] for n in names])
    score = sum(float((params[n].detach() * g).abs().sum()) for n, g in zip(names, grads))
    value = run("synflow", model, images, labels)
    assert value == pytest.approx(math.log10(score), rel=1e-9)
    assert 0 < value < 300  # a log10, not the raw score


def test_synflow_of_a_dead_network_is_the_floor():
    net = chain()
    with torch.no_grad():
        net[0].weight.zero_()
    value = run("synflow", net, torch.ones(2, 3, 4, 4, dtype=F64), torch.zeros(2, dtype=torch.long))
    assert value == -math.inf and stored_value(PROXIES["synflow"], value, 0, 1) == FLOOR
    with pytest.raises(BlockswapError, match="proxy zen is nan for candidate 4 at k = 2"):
        stored_value(PROXIES["zen"], float("nan"), 4, 2)


def test_zen_against_the_paper_algorithm():
    model, images, labels = tiny()
    net = copy.deepcopy(model).train()
    g = torch.Generator().manual_seed(derive_seed(SEED, CANDIDATE, zlib.crc32(b"zen")))
    with torch.no_grad():
        for m in net.modules():  # module order: the draw order
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g))
                if m.bias is not None:
                    m.bias.zero_()
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.fill_(1)
                m.bias.zero_()
                m.running_mean.zero_()
                m.running_var.fill_(1)
        x = torch.randn(images.shape, generator=g, dtype=F64)
        eps = torch.randn(images.shape, generator=g, dtype=F64)
        # f: the map global pooling reads (Zen-NAS's forward_pre_GAP), after the head's BN-ReLU,
        # so that every BN sigma below undoes a normalisation f went through.
        assert any(isinstance(m, nn.BatchNorm2d) for m in net.head.modules())
        maps = []
        handle = net.head.register_forward_hook(lambda mod, inp, out: maps.append(out.clone()))
        net(x)
        net(x + 0.01 * eps)
        handle.remove()
    delta = sum(float((maps[0][n] - maps[1][n]).abs().sum()) for n in range(len(x))) / len(x)
    bn = sum(math.log(math.sqrt(float(m.running_var.mean()))) for m in net.modules() if isinstance(m, nn.BatchNorm2d))
    assert run("zen", model, images, labels) == pytest.approx(math.log(delta) + bn, rel=1e-9)


# --- activation proxies -------------------------------------------------------------------------


def brute_naswot_kernel(model, images):
    """Codes of every nn.ReLU's input (a pre-hook: before the in-place ReLU overwrites it), then
    K[i, j] = number of units where examples i and j have the same code, pair by pair."""
    codes = []
    net = copy.deepcopy(model).train()
    hooks = [
        m.register_forward_pre_hook(lambda mod, inp: codes.append((inp[0] > 0).flatten(1).numpy().copy()))
        for m in net.modules()
        if isinstance(m, nn.ReLU)
    ]
    with torch.no_grad():
        net(images)
    for h in hooks:
        h.remove()
    c = np.concatenate(codes, axis=1)
    n = len(c)
    kernel = np.array([[float(np.sum(c[i] == c[j])) for j in range(n)] for i in range(n)])
    return kernel, len(codes)


def test_naswot_against_pairwise_code_agreement():
    model, images, labels = tiny(n=5)
    kernel, _ = brute_naswot_kernel(model, images)
    sign, logdet = np.linalg.slogdet(kernel)
    assert sign > 0
    assert run("naswot", model, images, labels) == pytest.approx(logdet, rel=1e-9)


def test_naswot_sees_every_relu_module_and_functional_call():
    model, images, _ = tiny(n=4)
    kernel, relus = relu_kernel(copy.deepcopy(model).train(), images)
    brute, counted = brute_naswot_kernel(model, images)
    assert relus == counted == sum(1 for m in model.modules() if isinstance(m, nn.ReLU)) > 0
    np.testing.assert_array_equal(kernel.numpy(), brute)

    class Functional(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1).double()
            self.act = nn.ReLU(inplace=True)

        def forward(self, x):
            x = self.act(self.conv(x))  # module, in place
            x = F.relu(x - 0.1)  # functional
            x = torch.relu(x - 0.1)
            x = (x - 0.1).relu_()  # tensor method, in place
            return F.relu(x - 0.1, inplace=True)

    net = Functional()
    x = torch.randn(4, 3, 5, 5, dtype=F64, generator=torch.Generator().manual_seed(1))
    kernel, relus = relu_kernel(net, x)
    assert relus == 5
    # By hand: the input of each ReLU, recomputed step by step.
    inputs = [net.conv(x)]
    for _ in range(4):
        inputs.append(inputs[-1].clamp_min(0) - 0.1)
    c = torch.cat([(t > 0).flatten(1) for t in inputs], 1).numpy()
    expected = [[float(np.sum(c[i] == c[j])) for j in range(4)] for i in range(4)]
    np.testing.assert_array_equal(kernel.detach().numpy(), np.array(expected))
    assert {F.relu, torch.relu_, torch.Tensor.relu_} <= RELU_CALLS


def test_jacob_cov_against_an_explicit_jacobian():
    model, images, labels = tiny(n=5)
    net = copy.deepcopy(model).train()
    jac = torch.autograd.functional.jacobian(net, images, vectorize=True)  # (N, classes, N, 3, 8, 8)
    rows = np.stack([jac[:, :, n].sum((0, 1)).flatten().numpy() for n in range(len(images))])
    values = np.real(np.linalg.eig(np.corrcoef(rows))[0])  # zero-cost-nas's general solver
    k = 1e-5
    expected = -np.sum(np.log(values + k) + 1.0 / (values + k))
    assert run("jacob_cov", model, images, labels) == pytest.approx(expected, rel=1e-6)


def test_meco_against_per_layer_channel_correlations():
    model, images, labels = tiny()
    net = copy.deepcopy(model).train()
    g = torch.Generator().manual_seed(derive_seed(SEED, CANDIDATE, zlib.crc32(b"meco")))
    x = torch.randn((1, 3, 8, 8), generator=g, dtype=F64)
    mins = []

    def hook(module, inp, out):
        f = out[0].detach().numpy().reshape(out.shape[1], -1).copy()
        if f.shape[1] > 1:
            with np.errstate(invalid="ignore", divide="ignore"):
                corr = np.corrcoef(f)
            corr[~np.isfinite(corr)] = 0
            mins.append(float(np.min(np.real(np.linalg.eigvals(corr)))))

    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.BatchNorm2d, nn.ReLU)):
            m.register_forward_hook(hook)
    with torch.no_grad():
        net(x)
    assert len(mins) > 10
    assert run("meco", model, images, labels) == pytest.approx(sum(mins), rel=1e-8, abs=1e-10)


# --- controls -----------------------------------------------------------------------------------


def test_random_is_seeded_per_candidate_and_ignores_the_network():
    model, images, labels = tiny()
    other, _, _ = tiny("S S S", seed=5)

    def random(net, candidate, seed=SEED):
        return PROXIES["random"].compute(Measurement(net, images, labels, seed=seed, candidate=candidate))

    values = [random(model, c) for c in range(20)]
    assert len(set(values)) == 20 and all(0 <= v < 1 for v in values)
    assert values == [random(other, c) for c in range(20)]  # repeats, whatever the network
    assert random(model, 0, seed=SEED + 1) != values[0]


def test_cost_controls_read_the_candidates_columns():
    model, images, labels = tiny()
    costs = {"params": 12345, "macs": 678, "ops": 9}
    assert run("params", model, images, labels, costs=costs) == 12345
    assert run("macs", model, images, labels, costs=costs) == 678


# --- determinism and scoring --------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(PROXIES))
def test_every_proxy_repeats_to_the_bit_in_float32(name):
    model, images, labels = tiny(n=8, dtype=torch.float32)
    costs = {"params": 1, "macs": 2, "ops": 3}
    first = run(name, model, images, labels, costs=costs)
    again = run(name, copy.deepcopy(model), images.clone(), labels.clone(), costs=costs)
    assert math.isfinite(first) and first == again


@pytest.mark.slow
def test_measuring_every_proxy_leaves_table1_and_training_untouched():
    torch.manual_seed(0)
    batches = [(torch.randn(8, 3, 8, 8), torch.randint(0, 10, (8,))) for _ in range(2)]
    table1 = [p for p in PROXIES.values() if p.kind == "table1"]
    alone = measure_along_training(build_model("wrn-10-1", seed=0), iter(batches), table1, [1, 2])
    model = build_model("wrn-10-1", seed=0)
    every, seconds = measure_candidate(
        model, iter(batches), parse_proxies(PROXIES), [1, 2], SEED, CANDIDATE, {"params": 1, "macs": 2, "ops": 3}
    )
    for k in (1, 2):
        assert every[k][1] == alone[k][1]
        assert {p.name: every[k][0][p.name] for p in table1} == alone[k][0]
        assert set(every[k][0]) == set(PROXIES)
    assert set(seconds) == {p.name for p in PROXIES.values() if p.own_pass} | {"fisher"}


@pytest.mark.slow
def test_scores_file_with_every_proxy_is_shard_invariant(tmp_path):
    digits = load_dataset("digits", image_size=8)
    table = CostTable.build(parse_arch("wrn-10-1"), CANDIDATE_SETS["paper"], (8, 8), 10)
    candidates = sample_candidates(table, 20_000, 3, seed=0, tolerance=0.5)
    settings = ScoringSettings(
        arch="wrn-10-1",
        dataset="digits",
        num_classes=10,
        image_size=8,
        batch_size=8,
        seed=1,
        proxies=["synflow", "fisher", "naswot", "random", "params", "snip", "l2_norm"],
        minibatches=[1, 2],
    )
    whole = score_candidates(candidates, settings, digits, tmp_path / "all.csv", progress=False)
    parts = [
        score_candidates(candidates, settings, digits, tmp_path / f"s{i}.csv", (i, 2), progress=False) for i in range(2)
    ]
    assert list(whole.columns) == [
        "candidate",
        "genotype",
        "params",
        "macs",
        "ops",
        "fisher",
        "fisher_blocks",
        "synflow@1",
        "naswot@1",
        "random@1",
        "snip@1",
        "l2_norm@1",
        "fisher@2",
        "synflow@2",
        "naswot@2",
        "random@2",
        "snip@2",
        "l2_norm@2",
        "seconds_fisher",
        "seconds_synflow",
        "seconds_naswot",
        "seconds_random",
        "seconds_snip",
        "seconds",
    ]
    scores = [c for c in whole if not is_timing(c)]
    pd.testing.assert_frame_equal(whole[scores], pd.concat(parts).reset_index(drop=True)[scores], check_exact=True)
    read, _ = read_scores(tmp_path / "all.csv")  # the strict reader accepts every column
    assert list(read.columns) == list(whole.columns)
    assert (whole["random@1"] == whole["random@2"]).all() and whole["random@1"].nunique() == 3
    assert (whole["synflow@1"] != whole["synflow@2"]).all()  # measured after one SGD step at k = 2
