"""Many ABP fits of one config as one stacked ensemble: the same algorithm, M models at once.

A sweep trains the same model at the same latent size many times, differing only in seed and data
(seeds x learn-from-corrupted variants). One small generator fills a few percent of a GPU; stacked,
M of them run as one batched network: their weights are stacked along a new leading axis
(:func:`torch.func.stack_module_state`) and one forward pass evaluates every member on its own
mini-batch (:func:`torch.func.vmap` over :func:`torch.func.functional_call`): the generator's layers, the
bulk of the work, run as one batched call per layer for all M models. (The likelihood terms, the observation
indexing and the random draws still loop over members in Python: each member has its own operator and random
stream; those launches grow with M.)

:func:`fit_stacked` does for every member exactly what :meth:`genbench.abp.ABP.fit` does (Han et al.,
"Alternating Back-Propagation for Generator Network", AAAI 2017)::

    per member m: networks, persistent latents z_m (N, d)     # drawn from generator m, as ABP does
    for epoch:
        per member: perm_m = randperm(N)                       # from generator m
        for batch b:
            l Langevin steps on z_m[perm_m[b]] for every m at once (noise from generator m)
            one Adam step on the stacked weights: loss = sum_m mean_i ||y - A_m(g_m(z))||^2 / (2 sigma^2)
    per member: weights and latents back into the model, exact BN statistics, eval mode

Each member's loss depends on its own weights only, so the gradient of the sum is each member's own
gradient, and Adam is element-wise, so one optimiser over the stacked weights is M optimisers. Each
member draws its random numbers from its own :class:`torch.Generator`, in the order a separate fit
draws them from the global one, and each member has its own observations and operator (its own masks
or projection). So member m equals ``ABP(config).fit(obs[m])`` run after the global generator was
seeded like ``generators[m]``, up to the float rounding of the batched convolutions
(tests/test_stacked.py). BatchNorm statistics are each member's own (vmap keeps them apart) and are
recomputed exactly per member at the end, as in a separate fit.

Example::

    >>> gens = [torch.Generator().manual_seed(s) for s in (0, 1, 2)]
    >>> models = fit_stacked(ABPConfig(latent_dim=10), [obs0, obs1, obs2], gens)
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap

from genbench.abp import ABP, ABPConfig, _bn_mode
from genbench.backbone import using_conv_path
from genbench.inference import langevin_steps, neg_log_joint
from genbench.model import autocast, check_finite, progress
from genbench.operators import Observations, gaussian_nll

__all__ = ["fit_stacked", "StackedNetwork"]


class StackedNetwork:
    """M networks of one architecture as one: ``net(x)`` maps (M, B, ...) to (M, B, ...), member m's
    weights applied to ``x[m]``. ``params`` are leaf tensors (M, ...) that take gradients; ``buffers``
    (BN running statistics) are updated in place by train-mode forward passes, per member."""

    def __init__(self, nets: Sequence[nn.Module]) -> None:
        self.params, self.buffers = stack_module_state(list(nets))
        self.base = copy.deepcopy(nets[0])  # the architecture; functional_call supplies the weights

        def one(params: dict[str, Tensor], buffers: dict[str, Tensor], x: Tensor) -> Tensor:
            return functional_call(self.base, (params, buffers), (x,))

        self._forward = vmap(one)

    def __call__(self, x: Tensor, *, frozen: bool = False) -> Tensor:
        """(M, B, ...) -> (M, B, ...); ``frozen``: the weights take no gradient (inference on x only)."""
        params = {k: v.detach() for k, v in self.params.items()} if frozen else self.params
        with using_conv_path("native"):  # vmap has no batching rule for the im2col kernel: it would loop
            return self._forward(params, self.buffers, x)

    def train(self, mode: bool = True) -> StackedNetwork:
        self.base.train(mode)
        return self

    def write_back(self, nets: Sequence[nn.Module]) -> None:
        """Copy member m's weights and buffers into ``nets[m]``."""
        with torch.no_grad():
            for m, net in enumerate(nets):
                for name, t in [*net.named_parameters(), *net.named_buffers()]:
                    t.copy_((self.params.get(name) if name in self.params else self.buffers[name])[m])


@contextmanager
def _drawing_from(gen: torch.Generator) -> Iterator[None]:
    """Inside the block the global generator of ``gen``'s device continues ``gen``'s stream (for code
    that draws from the global one, such as module initialisation); after it, ``gen`` continues from
    where the block left off and the global generator is as it was."""
    device = gen.device
    cuda = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda, device_type="cuda"):
        if device.type == "cuda":
            torch.cuda.set_rng_state(gen.get_state(), device)
        else:
            torch.set_rng_state(gen.get_state())
        yield
        gen.set_state(torch.cuda.get_rng_state(device) if device.type == "cuda" else torch.get_rng_state())


def _check_members(config: ABPConfig, obs: Sequence[Observations], generators: Sequence[torch.Generator]) -> None:
    if not isinstance(config, ABPConfig):
        raise TypeError(f"fit_stacked fits ABP models: expected an ABPConfig, got {type(config).__name__}")
    if config.compile:
        raise ValueError("fit_stacked does not torch.compile its stacked network; use compile=False")
    if len(obs) == 0 or len(obs) != len(generators):
        raise ValueError(f"fit_stacked needs one generator per member: got {len(obs)} observation sets and "
                         f"{len(generators)} generators")
    first = obs[0]
    for m, o in enumerate(obs):
        if not isinstance(o, Observations):
            raise TypeError(f"member {m}: expected Observations, got {type(o).__name__}")
        if (len(o), tuple(o.image_shape), o.device) != (len(first), tuple(first.image_shape), first.device):
            raise ValueError(f"the members of a stacked fit must have as many images of one shape on one device: "
                             f"member 0 has {len(first)} of {tuple(first.image_shape)} on {first.device}, member "
                             f"{m} has {len(o)} of {tuple(o.image_shape)} on {o.device}")
        if torch.device(generators[m].device) != o.device:
            raise ValueError(f"member {m}: its generator is on {generators[m].device}, its data on {o.device}")
        if config.epochs_for(o) != config.epochs_for(first):
            raise ValueError(f"the members of a stacked fit must train for as many epochs: member 0 for "
                             f"{config.epochs_for(first)}, member {m} for {config.epochs_for(o)} (n_epochs_by_operator: "
                             f"stack fits of one epoch count)")


def fit_stacked(config: ABPConfig, obs: Sequence[Observations],
                generators: Sequence[torch.Generator]) -> list[ABP]:
    """Fit one :class:`~genbench.abp.ABP` per member (``obs[m]``, random numbers from ``generators[m]``)
    as one stacked ensemble; returns the fitted models, each as ``ABP(config).fit(obs[m])`` leaves it
    (module docstring). All members have the same number of images, image shape and device."""
    _check_members(config, obs, generators)
    cfg, n, members = config, len(obs[0]), [ABP(config) for _ in obs]
    for model, o, gen in zip(members, obs, generators):  # each member's own draws, in ABP.fit's order
        model._check_obs(o, fitting=True)
        model._set_fitted(o)
        model.history_ = []
        with _drawing_from(gen):
            model._start_fit(o)  # networks, persistent latents (its optimiser is replaced by the stacked one)
    device = obs[0].device
    net = StackedNetwork([m.generator_ for m in members]).train()
    z_train = torch.stack([m.z_train_ for m in members])  # (M, N, d)
    optimizer = torch.optim.Adam(list(net.params.values()), lr=cfg.lr, betas=(cfg.beta1, 0.999))
    members_idx = torch.arange(len(members), device=device)[:, None]
    for epoch in progress(range(cfg.epochs_for(obs[0])), desc=f"abp stacked fit (M={len(members)})"):
        total = torch.zeros(len(members), device=device)
        perms = torch.stack([torch.randperm(n, device=device, generator=g) for g in generators])  # (M, N)
        for batch in members[0]._batches(n, cfg.batch_size):
            idx = perms[:, batch]  # (M, B)
            obs_b = [o[i] for o, i in zip(obs, idx)]
            z_b = _langevin(net, obs_b, z_train[members_idx, idx], cfg, generators)
            z_train[members_idx, idx] = z_b
            with autocast(device, cfg.amp):
                x_hat = net(z_b)
            losses = torch.stack([gaussian_nll(o, x.float(), cfg.sigma).mean() for o, x in zip(obs_b, x_hat)])
            optimizer.zero_grad(set_to_none=True)
            losses.sum().backward()  # each member's gradient is its own loss's
            optimizer.step()
            total += losses.detach() * idx.shape[1]
        check_finite(total, f"{members[0].loss_name} at epoch {epoch + 1}")
        for model, value in zip(members, total.tolist()):
            model.history_.append(value / n)  # as GeneratorModel.fit: total.item() / n
    net.write_back([m.generator_ for m in members])
    for m, (model, o) in enumerate(zip(members, obs)):
        model.z_train_ = z_train[m].clone()
        model._recalibrate(o)  # exact BN statistics of each member, then eval mode
    return members


def _langevin(net: StackedNetwork, obs_b: Sequence[Observations], z: Tensor, cfg: ABPConfig,
              generators: Sequence[torch.Generator]) -> Tensor:
    """:func:`genbench.inference.langevin` on every member's latents (M, B, d) at once, the weights
    frozen; member m's noise drawn from ``generators[m]``."""
    def energy(z: Tensor) -> Tensor:
        with autocast(z.device, cfg.amp):
            x_hat = net(z, frozen=True)
        return sum(neg_log_joint(o, x.float(), zm, cfg.sigma).sum() for o, x, zm in zip(obs_b, x_hat, z))

    def noise(z: Tensor) -> Tensor:
        return torch.stack([torch.randn(zm.shape, device=z.device, generator=g) for zm, g in zip(z, generators)])

    with _bn_mode(net.base, cfg.langevin_bn):
        return langevin_steps(energy, z, steps=cfg.langevin_steps, step_size=cfg.step_size,
                              noise=noise if cfg.langevin_noise else None)
