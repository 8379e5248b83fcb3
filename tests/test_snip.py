"""SNIP (Table 2 baseline): saliency against independent gradients, exact budgets, global top-k over
the convolution weights, the classifier kept dense."""

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from blockswap import build_model
from blockswap.errors import BlockswapError
from blockswap.training.snip import (
    apply_masks,
    connection_saliency,
    remaining_params,
    snip_masks,
)


def minibatch(seed, n=4, size=8, dtype=torch.float32, classes=10):
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(n, 3, size, size, generator=generator, dtype=dtype)
    return images, torch.randint(0, classes, (n,), generator=generator)


def prunable_by_type(model):
    """Convolution weights, found from the modules' types rather than by snip.py's walk."""
    return {f"{name}.weight" for name, m in model.named_modules() if type(m) is nn.Conv2d}


def classifier_params(model):
    return {n for n, m in model.named_modules() if type(m) is nn.Linear for n in (f"{n}.weight", f"{n}.bias")}


def counts(model):
    total = sum(p.numel() for p in model.parameters())
    prunable = sum(p.numel() for n, p in model.named_parameters() if n in prunable_by_type(model))
    return total - prunable, total


def test_saliency_of_a_one_convolution_model_equals_its_analytic_gradient():
    # A 2x2 convolution over a 2x2 image is a linear map of the flattened image.
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 5, 2), nn.Flatten()).double()
    x = torch.randn(7, 3, 2, 2, dtype=torch.float64)
    y = torch.randint(0, 5, (7,))
    saliency = connection_saliency(model, x, y)
    assert set(saliency) == {"0.weight"}  # the bias is not prunable
    flat, weight = x.flatten(1), model[0].weight.detach()
    probabilities = torch.softmax(flat @ weight.flatten(1).T + model[0].bias, dim=1)
    # d(mean CE)/dW = (softmax - onehot)^T x / N
    gradient = ((probabilities - F.one_hot(y, 5).double()).T @ flat / len(y)).view_as(weight)
    torch.testing.assert_close(saliency["0.weight"], (weight * gradient).abs(), rtol=1e-12, atol=0)


def test_the_classifier_is_never_pruned_and_counts_in_full():
    # The BlockSwap authors' SNIP masks convolutions only: at the smallest budget every
    # convolution weight is pruned and the classifier is left whole, and it counts toward the budget.
    model = build_model("wrn-10-1", num_classes=10, seed=0)
    fixed, total = counts(model)
    classifier = classifier_params(model)
    assert classifier and not classifier & set(connection_saliency(model, *minibatch(0)))
    masks = snip_masks(model, *minibatch(0), keep_params=fixed)
    assert set(masks) == prunable_by_type(model) and not classifier & set(masks)
    assert all(int(m.sum()) == 0 for m in masks.values())
    assert remaining_params(model, masks) == fixed
    params = dict(model.named_parameters())
    assert fixed > sum(params[n].numel() for n in classifier) > 0
    with pytest.raises(BlockswapError, match="must be between"):
        snip_masks(model, *minibatch(0), keep_params=fixed - params["classifier.2.weight"].numel())


def test_saliency_equals_central_finite_differences_in_float64():
    model = build_model("wrn-10-1", "G(2)", num_classes=10, seed=0).double()
    images, labels = minibatch(1, dtype=torch.float64)
    saliency = connection_saliency(model, images, labels)
    assert set(saliency) == prunable_by_type(model)
    params = dict(model.named_parameters())
    generator = torch.Generator().manual_seed(2)
    eps = 1e-6
    model.train()  # the saliency is defined with BN batch statistics
    for name in sorted(saliency):
        w = params[name]
        for index in torch.randint(0, w.numel(), (2,), generator=generator).tolist():
            with torch.no_grad():
                original = w.view(-1)[index].item()
                w.view(-1)[index] = original + eps
                up = F.cross_entropy(model(images), labels).item()
                w.view(-1)[index] = original - eps
                down = F.cross_entropy(model(images), labels).item()
                w.view(-1)[index] = original
            expected = abs(original * (up - down) / (2 * eps))
            assert saliency[name].view(-1)[index].item() == pytest.approx(expected, rel=1e-5, abs=1e-12), name


def test_saliency_leaves_no_grad_and_no_trace_on_the_model():
    model = build_model("wrn-10-1", num_classes=10, seed=0)
    model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    connection_saliency(model, *minibatch(0))
    assert all(p.grad is None for p in model.parameters())
    assert not model.training  # mode restored
    after = model.state_dict()
    # BN running statistics (and counters) are as initialised, not updated by the train-mode pass.
    assert all(torch.equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize("fraction", [0.0, 0.013, 0.25, 0.5, 0.999, 1.0])
def test_remaining_parameters_equal_the_budget_exactly(fraction):
    model = build_model("wrn-10-1", num_classes=10, seed=0)
    fixed, total = counts(model)
    keep = fixed + round(fraction * (total - fixed))
    masks = snip_masks(model, *minibatch(0), keep_params=keep)
    assert remaining_params(model, masks) == keep
    assert sum(int(m.sum()) for m in masks.values()) == keep - fixed
    assert all(torch.all((m == 0) | (m == 1)) for m in masks.values())


def test_a_paper_budget_on_wrn_40_2():
    # Table 2's smallest SNIP row keeps 162.2K of WRN-40-2's 2243.5K parameters; the dense
    # classifier (128 x 10 weights and 10 biases) is part of them.
    model = build_model("wrn-40-2", num_classes=10, seed=0)
    masks = snip_masks(model, *minibatch(0, n=2, size=16), keep_params=162_200)
    assert remaining_params(model, masks) == 162_200
    assert set(masks) == prunable_by_type(model)
    apply_masks(model, masks)
    kept = sum(int(torch.count_nonzero(p)) for n, p in model.named_parameters() if n in masks)
    assert kept == 162_200 - counts(model)[0]
    classifier = dict(model.named_parameters())["classifier.2.weight"]
    assert classifier.shape == (10, 128) and int(torch.count_nonzero(classifier)) == 1280


def brute_force_top_k(saliency, names, k):
    """Python sort of (-saliency, network position): the k most salient, ties to the earlier weight."""
    values = torch.cat([saliency[n].flatten() for n in names]).tolist()
    entries = [(-value, position) for position, value in enumerate(values)]
    return {position for _, position in sorted(entries)[:k]}


def test_kept_weights_are_exactly_the_global_top_k_by_saliency():
    # float64: the precision snip_masks ranks in, so the brute force sees the same saliencies.
    model = build_model("wrn-10-1", "B(2)", num_classes=10, seed=3).double()
    images, labels = minibatch(3, dtype=torch.float64)
    # Zero a whole layer and half of another: their saliency is 0, so the threshold falls among
    # tied values and the tie rule (network order) decides which of them are kept.
    names = [n for n, _ in model.named_parameters() if n in prunable_by_type(model)]
    params = dict(model.named_parameters())
    with torch.no_grad():
        params[names[1]].zero_()
        params[names[3]].view(-1)[::2] = 0
    saliency = connection_saliency(model, images, labels)
    nonzero = sum(int(torch.count_nonzero(saliency[n])) for n in names)
    fixed, _ = counts(model)
    for k in (1, nonzero // 3, nonzero, nonzero + 37):
        masks = snip_masks(model, images, labels, keep_params=fixed + k)
        kept = torch.cat([masks[n].flatten() for n in names]).nonzero().flatten().tolist()
        assert set(kept) == brute_force_top_k(saliency, names, k)


def test_one_threshold_for_the_whole_network():
    model = build_model("wrn-10-1", num_classes=10, seed=0).double()
    images, labels = minibatch(0, dtype=torch.float64)
    fixed, total = counts(model)
    masks = snip_masks(model, images, labels, keep_params=fixed + (total - fixed) // 10)
    saliency = connection_saliency(model, images, labels)
    lowest_kept = min(float(saliency[n][masks[n] == 1].min()) for n in masks if masks[n].any())
    highest_pruned = max(float(saliency[n][masks[n] == 0].max()) for n in masks if not masks[n].all())
    assert lowest_kept >= highest_pruned
    # Global, not per layer: layers keep very different fractions.
    fractions = [float(m.mean()) for m in masks.values()]
    assert max(fractions) - min(fractions) > 0.2


def test_apply_masks_prunes_weights_and_leaves_bn_and_biases_alone():
    model = build_model("wrn-10-1", num_classes=10, seed=0)
    images, labels = minibatch(0)
    fixed, total = counts(model)
    masks = snip_masks(model, images, labels, keep_params=fixed + (total - fixed) // 4)
    assert set(masks) == prunable_by_type(model)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    apply_masks(model, masks)
    for name, p in model.named_parameters():
        if name in masks:
            assert torch.equal(p[masks[name] == 1], before[name][masks[name] == 1])
            assert torch.all(p[masks[name] == 0] == 0)
        else:
            assert torch.equal(p, before[name]), name
    # What is left unmasked is exactly the BN parameters, the biases and the classifier.
    bn = {f"{n}.{k}" for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d) for k in ("weight", "bias")}
    biases = {n for n, _ in model.named_parameters() if n.endswith(".bias")}
    assert {n for n, _ in model.named_parameters()} - set(masks) == bn | biases | classifier_params(model)


def test_masks_are_deterministic_and_depend_on_the_minibatch():
    def masks_for(seed, batch_seed):
        model = build_model("wrn-10-1", num_classes=10, seed=seed)
        fixed, total = counts(model)
        return snip_masks(model, *minibatch(batch_seed), keep_params=fixed + (total - fixed) // 5)

    first, again, other = masks_for(0, 0), masks_for(0, 0), masks_for(0, 1)
    assert all(torch.equal(first[n], again[n]) for n in first)
    assert any(not torch.equal(first[n], other[n]) for n in first)


@pytest.mark.slow
def test_masks_do_not_depend_on_the_memory_layout():
    # In float32, channels-last and contiguous convolutions round differently and swap weights
    # near the threshold; the ranking is done in float64, where they agree.
    images, labels = minibatch(5, n=16, size=16)
    contiguous = build_model("wrn-16-2", num_classes=10, seed=0)
    channels_last = build_model("wrn-16-2", num_classes=10, seed=0).to(memory_format=torch.channels_last)
    fixed, total = counts(contiguous)
    for fraction in (0.1, 0.25, 0.5):
        keep = fixed + round(fraction * (total - fixed))
        a = snip_masks(contiguous, images, labels, keep)
        b = snip_masks(channels_last, images.contiguous(memory_format=torch.channels_last), labels, keep)
        assert all(torch.equal(a[n], b[n]) for n in a)
        assert all(a[n].dtype == torch.float32 for n in a)


def test_keep_params_outside_the_range_is_one_clear_error():
    model = build_model("wrn-10-1", num_classes=10, seed=0)
    fixed, total = counts(model)
    for keep in (fixed - 1, total + 1, -5):
        with pytest.raises(BlockswapError, match=rf"^keep_params must be between {fixed} .* and {total} .*got {keep}$"):
            snip_masks(model, *minibatch(0), keep_params=keep)
    with pytest.raises(BlockswapError, match="whole number"):
        snip_masks(model, *minibatch(0), keep_params=1000.5)


def test_masks_that_do_not_fit_the_model_are_clear_errors():
    model = build_model("wrn-10-1", num_classes=10, seed=0)
    name, weight = next((n, p) for n, p in model.named_parameters() if n in prunable_by_type(model))
    with pytest.raises(BlockswapError, match="no such parameter"):
        apply_masks(model, {"nowhere.weight": torch.ones(3)})
    with pytest.raises(BlockswapError, match=rf"mask for {name} has shape"):
        apply_masks(model, {name: torch.ones(weight.numel())})
    with pytest.raises(BlockswapError, match="no such parameter"):
        remaining_params(model, {"nowhere.weight": torch.ones(3)})
