"""Scoring's module bank: candidates assembled from blocks built once and re-initialised in place.

Building a candidate afresh (`build_model`) constructs a few hundred modules, draws PyTorch's
default initialisation only for `initialise` to overwrite it, and moves every tensor to the device
one copy at a time; on a GPU that host work costs more than measuring the network. A `ModuleBank`
builds each (slot, block type) the first time a candidate uses it, and the stem, head and
classifier once, on the scoring device in the scoring layout. Per candidate it

- assembles the network from those modules (`assemble`);
- draws the initial values on the host (`draw`): from the generator `build_model(..., seed)`
  seeds, by the same laws and in the same order (`models.initial_values`, the order of
  `Network.modules()`: stem, blocks in slot order, head, classifier), each into a contiguous
  slice of one host buffer (pinned on CUDA), which gives exactly the values a freshly built
  tensor receives;
- places them (`place`): one host-to-device copy of the buffer, then every drawn tensor
  overwritten from it and every other parameter and buffer (BN weights, biases, running
  statistics) reset to its value in a fresh build, in a few multi-tensor operations.

Every parameter and buffer then holds, bit for bit, what a fresh build of the candidate holds
(tests/test_bank.py), whatever the previous candidate's measurement did to the modules: SGD steps,
BN running statistics, gradients, frozen weights. Proxies that change a network's structure
(SynFlow removes its BatchNorm layers) or redraw its weights (zen) work on their own copy
(`proxies.candidate.private_copy`), never on the bank's modules.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import chain

import torch
from torch import nn

from ..errors import BlockswapError
from ..networks.architectures import Architecture, GenotypeLike, NetworkSpec
from ..networks.blocks import BlockType
from ..networks.layers import Classifier
from ..networks.models import InitialValue, Network, initial_values, set_initial_value
from ..networks.modules import build_block, build_layer, build_sequence

# Every hook dictionary of an nn.Module: a hook left behind would act on the next candidate.
HOOKS = (
    "_forward_hooks",
    "_forward_hooks_with_kwargs",
    "_forward_hooks_always_called",
    "_forward_pre_hooks",
    "_forward_pre_hooks_with_kwargs",
    "_backward_hooks",
    "_backward_pre_hooks",
)


@dataclass
class Reset:
    """What re-initialises one module of the bank (its tensors in `initialise`'s order)."""

    draws: list[InitialValue]  # drawn from the generator, in order
    numel: int  # elements of all draws: the module's share of the host buffer
    ones: list[torch.Tensor]  # BN weights and running variances
    zeros: list[torch.Tensor]  # BN and linear biases, BN running means
    counts: list[torch.Tensor]  # BN batch counts (integers: a multi-tensor op of their own)
    params: list[nn.Parameter]
    modules: list[nn.Module]

    @classmethod
    def of(cls, module: nn.Module) -> Reset:
        values = initial_values(module)
        draws = [v for v in values if v.law != "fill"]
        ones = [v.tensor for v in values if v.law == "fill" and v.a == 1.0]
        zeros = [v.tensor for v in values if v.law == "fill" and v.a == 0.0]
        norms = [m for m in module.modules() if isinstance(m, nn.BatchNorm2d)]
        # What construction leaves in the statistics.
        ones += [m.running_var for m in norms]
        zeros += [m.running_mean for m in norms]
        counts = [m.num_batches_tracked for m in norms]
        covered = {id(t) for t in chain((v.tensor for v in draws), ones, zeros, counts)}
        for name, tensor in chain(module.named_parameters(), module.named_buffers()):
            if id(tensor) not in covered:
                raise BlockswapError(
                    f"the module bank cannot re-initialise {type(module).__name__}.{name}: "
                    "`models.initial_values` does not set it"
                )
        numel = sum(v.tensor.numel() for v in draws)
        return cls(draws, numel, ones, zeros, counts, list(module.parameters()), list(module.modules()))


class ModuleBank:
    """Built modules of one architecture on one device, assembled into candidates on demand."""

    def __init__(
        self,
        arch: Architecture,
        num_classes: int,
        device: torch.device,
        memory_format: torch.memory_format = torch.contiguous_format,
    ):
        self.arch, self.num_classes = arch, num_classes
        self.device, self.memory_format = device, memory_format
        self.cuda = device.type == "cuda"
        self.stem = self._placed(build_sequence(arch.stem))
        self.head = self._placed(build_sequence(arch.head))
        self.classifier = self._placed(build_layer(Classifier(arch.features, num_classes)))
        self.blocks: dict[tuple[int, BlockType], nn.Module] = {}
        self.resets: dict[int, Reset] = {id(m): Reset.of(m) for m in (self.stem, self.head, self.classifier)}
        self.host = torch.empty(0)
        self.staged = torch.empty(0, device=device)  # the host buffer's copy on the device
        self.copied = torch.cuda.Event() if self.cuda else None  # the host buffer may be rewritten
        self.parts: list[Reset] = []
        self.sources: list[torch.Tensor] = []

    def _placed(self, module: nn.Module) -> nn.Module:
        return module.to(self.device, memory_format=self.memory_format)

    def block(self, slot: int, block_type: BlockType) -> nn.Module:
        key = (slot, block_type)
        if key not in self.blocks:
            s = self.arch.slots[slot]
            block = self._placed(build_block(block_type, s.cin, s.cout, s.stride))
            self.resets[id(block)] = Reset.of(block)
            self.blocks[key] = block
        return self.blocks[key]

    def network(self, genotype: GenotypeLike, seed: int) -> Network:
        """The candidate, exactly as `build_model(arch, genotype, num_classes, seed)` then moved
        to the device in the bank's layout. Valid until the next call: it shares the modules."""
        network = self.assemble(genotype)
        self.draw(seed)
        self.place()
        return network

    def assemble(self, genotype: GenotypeLike) -> Network:
        spec = NetworkSpec.create(self.arch, genotype, self.num_classes)
        blocks = [self.block(i, bt) for i, bt in enumerate(spec.genotype)]
        network = Network.assemble(spec, self.stem, blocks, self.head, self.classifier)
        # `Network.modules()` order: the order of the draws.
        self.parts = [self.resets[id(m)] for m in (self.stem, *blocks, self.head, self.classifier)]
        self.sources = []
        return network

    def draw(self, seed: int) -> None:
        """The assembled candidate's initial values, drawn into the host buffer."""
        total = sum(part.numel for part in self.parts)
        if self.copied is not None:
            self.copied.synchronize()  # the previous candidate's copy has left the pinned buffer
        if self.host.numel() < total:
            self.host = torch.empty(total, pin_memory=self.cuda)
        generator = torch.Generator().manual_seed(seed)
        self.sources, offset = [], 0
        for value in chain.from_iterable(part.draws for part in self.parts):
            n = value.tensor.numel()
            # A contiguous slice draws what a freshly built (contiguous) tensor of this shape draws.
            target = self.host[offset : offset + n].view(value.tensor.shape)
            set_initial_value(value, target, generator)
            self.sources.append(target)
            offset += n

    @torch.no_grad()
    def place(self) -> None:
        """The drawn values into the candidate's tensors, and every other tensor reset."""
        targets = [value.tensor for part in self.parts for value in part.draws]
        if len(self.sources) != len(targets):
            raise RuntimeError("ModuleBank.place needs the assembled candidate's values: call draw first")
        sources = self.sources
        if self.cuda:
            total = sum(part.numel for part in self.parts)
            if self.staged.numel() < total:
                self.staged = torch.empty(total, device=self.device)
            self.staged[:total].copy_(self.host[:total], non_blocking=True)
            self.copied.record()
            sources, offset = [], 0
            for target in targets:
                n = target.numel()
                sources.append(self.staged[offset : offset + n].view(target.shape))
                offset += n
        torch._foreach_copy_(targets, sources)
        ones = [t for part in self.parts for t in part.ones]
        torch._foreach_zero_([t for part in self.parts for t in part.zeros] + ones)
        torch._foreach_add_(ones, 1.0)
        torch._foreach_zero_([t for part in self.parts for t in part.counts])
        # A measurement may have left gradients, frozen a weight, switched a module to eval mode or
        # left a hook: a fresh build has none of these. Read first: they are rarely there.
        for part in self.parts:
            for p in part.params:
                if p.grad is not None:
                    p.grad = None
                if not p.requires_grad:
                    p.requires_grad_(True)
            for m in part.modules:
                if not m.training:
                    m.training = True
                if m._forward_hooks or m._forward_pre_hooks or m._backward_hooks or m._backward_pre_hooks:
                    for hooks in HOOKS:
                        getattr(m, hooks).clear()
                    m._is_full_backward_hook = None
