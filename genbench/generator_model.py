"""Models on the shared backbone (ABP, the VAE, the GAN, the example autoencoder): one config base,
one epoch loop, one decoder, one state dict, so a comparison between them is a comparison of what
each does per mini-batch (STYLE.md 6).

:meth:`GeneratorModel.fit` is written once::

    check the observations, record image shape and device
    state = _start_fit(obs)                 # networks self.<name>_ (train mode), optimisers, latents
    for epoch in 1..epochs_for(obs):     # n_epochs, or n_epochs_by_operator[obs.op.name]
        perm = randperm(N)                  # on the observations' device
        for idx in perm split in batches of batch_size:
            loss = _train_step(state, obs[idx], idx)   # one optimisation step: batch-mean loss(es)
            total += loss * len(idx)
        check_finite(total); history_.append(total / N)
    for name in networks:                   # "precise BN" for the final weights, then eval mode
        recalibrate_batchnorm(self.<name>_, _calibration_inputs(name, obs)); self.<name>_.eval()

A subclass names its fitted networks in ``networks``, builds them in :meth:`~GeneratorModel._build_networks`
and overrides three hooks: :meth:`~GeneratorModel._start_fit` (calling ``super()`` first),
:meth:`~GeneratorModel._train_step` and :meth:`~GeneratorModel._calibration_inputs`. Random numbers
are drawn in this order: the networks' initialisation, what ``_start_fit`` draws, then per epoch
the permutation followed by each step's draws, then the calibration's. ``state_dict`` /
``load_state_dict`` save and rebuild the declared networks with the image shape and the history.

Example (a model with one network, the generator, and a loss of your own)::

    class Mine(GeneratorModel):
        def _build_networks(self, image_shape, device):
            return {"generator": Generator(self.config.latent_dim, image_shape, self.config.width, device=device)}

        def _start_fit(self, obs):
            state = super()._start_fit(obs)
            state.optimizer = self._adam(self.generator_.parameters())
            return state

        def _train_step(self, state, obs_b, idx):
            loss = my_loss(self.generator_, obs_b).mean()
            state.optimizer.zero_grad(set_to_none=True); loss.backward(); state.optimizer.step()
            return loss.detach()
"""

from __future__ import annotations

import copy
from abc import abstractmethod
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from genbench.backbone import recalibrate_batchnorm
from genbench.model import LatentModel, ModelConfig, autocast, check_finite, progress, require, state_device
from genbench.operators import Identity, ImageShape, Observations


@dataclass(frozen=True)
class GeneratorConfig(ModelConfig):
    """Fields of every model built on the shared :class:`~genbench.backbone.Generator` (ABP, VAE,
    DCGAN): the same likelihood std, backbone width and optimiser knobs, so a comparison can hold
    them equal. Subclasses change defaults and add their own fields."""

    sigma: float = 0.3            # observation noise std of the shared likelihood (ABP paper's value)
    width: int = 32               # backbone width (channels of the generator's last hidden layer)
    lr: float = 1e-3              # Adam
    beta1: float = 0.5
    n_epochs: int = 40
    # epochs of a learn-from-corrupted fit by its operator's name, e.g. {"pixel-mask": 20, "projection": 60};
    # an operator not listed (and the clean fit, on the identity) trains n_epochs
    n_epochs_by_operator: Mapping[str, int] = field(default_factory=dict)
    batch_size: int = 50
    eval_batch_size: int = 500
    # execution switches (the runner sets them from --amp / --compile; see EXECUTION_FIELDS)
    amp: bool = False             # bf16 autocast of the networks' forward passes in fit / infer; CUDA only
    compile: bool = False         # torch.compile the networks (Generator, ConvTrunk) for fit / infer

    added_fields: ClassVar[dict[str, Any]] = {"n_epochs_by_operator": {}}

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self, positive=("sigma", "lr"), at_least_one=("width", "n_epochs", "batch_size",
                                                              "eval_batch_size"))
        if not 0 <= self.beta1 < 1:
            raise ValueError(f"{type(self).__name__}.beta1 must be in [0, 1), got {self.beta1}")
        if self.n_epochs_by_operator:
            self._check_epochs_by_operator()

    def _check_epochs_by_operator(self) -> None:
        from genbench.registry import OPERATORS

        name = f"{type(self).__name__}.n_epochs_by_operator"
        if not isinstance(self.n_epochs_by_operator, Mapping):
            raise ValueError(f"{name} must map operator names to epoch counts, e.g. {{'projection': 60}}, got "
                             f"{self.n_epochs_by_operator!r}")
        known = [n for n in OPERATORS.names() if n != Identity.name]
        for op, epochs in self.n_epochs_by_operator.items():
            if op not in known:
                raise ValueError(f"{name}: {op!r} is not an operator of a learn-from-corrupted fit; one of "
                                 f"{', '.join(known)} (the clean fit's epochs are n_epochs)")
            if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
                raise ValueError(f"{name}[{op!r}] must be an integer >= 1, got {epochs!r}")

    def fit_epochs(self, operator: str) -> int:
        """The epochs of a fit on data observed through the operator named ``operator``: its entry in
        ``n_epochs_by_operator``, else ``n_epochs`` (always for the identity: the clean fit)."""
        return self.n_epochs_by_operator.get(operator, self.n_epochs)

    def epochs_for(self, obs: Observations) -> int:
        """The epochs of a fit on ``obs`` (:meth:`fit_epochs` of its operator's name)."""
        return self.fit_epochs(obs.op.name)


class FitState(SimpleNamespace):
    """Training-only state of one fit (optimisers, compiled wrappers of the networks): made by
    :meth:`GeneratorModel._start_fit`, passed to every :meth:`GeneratorModel._train_step`, dropped
    when ``fit`` returns."""


class GeneratorModel(LatentModel):
    """A model whose decoder is the shared Generator, fitted as ``generator_``: decoding, the epoch
    loop and the state dict are written once here for ABP, the VAE and the GAN (module docstring).

    Class attributes: ``networks``, the names of the fitted ``nn.Module`` s (attribute
    ``<name>_``, key ``<name>`` of the state dict), in the order they are built; ``loss_name``,
    what the finiteness check calls the loss.
    """

    Config: ClassVar[type[ModelConfig]] = GeneratorConfig
    config: GeneratorConfig
    networks: ClassVar[tuple[str, ...]] = ("generator",)
    loss_name: ClassVar[str] = "training loss"

    # -- the epoch loop ---------------------------------------------------------------------
    def fit(self, obs: Observations, *,
            on_epoch: Callable[[GeneratorModel, Observations, int], None] | None = None) -> GeneratorModel:
        """Learn from ``obs`` (module docstring). ``on_epoch(self, obs, epochs_done)``, when given, is
        called after each epoch, mid-fit (networks in train mode, BN statistics not recalibrated): it may
        take :meth:`fitted_copy` to score the model a fit of that many epochs would return (the epoch
        curve of ``run_benchmarks.py epochs``), and must leave the model and the random state as it
        found them."""
        self._check_obs(obs, fitting=True)
        self._set_fitted(obs)
        cfg, n = self.config, len(obs)
        self.history_: list[Any] = []  # per epoch: the mean loss (a float, or a list of floats)
        state = self._start_fit(obs)
        for epoch in progress(range(cfg.epochs_for(obs)), desc=self._fit_desc()):
            total: Tensor | None = None
            perm = torch.randperm(n, device=obs.device)
            for batch in self._batches(n, cfg.batch_size):
                idx = perm[batch]
                loss = self._train_step(state, obs[idx], idx) * len(idx)
                total = loss if total is None else total + loss
            check_finite(total, f"{self.loss_name} at epoch {epoch + 1}")  # one host sync per epoch
            self.history_.append(total.item() / n if total.dim() == 0 else (total / n).tolist())
            if on_epoch is not None:
                on_epoch(self, obs, epoch + 1)
        self._recalibrate(obs)
        return self

    def fitted_copy(self, obs: Observations) -> GeneratorModel:
        """Mid-fit (from ``fit``'s ``on_epoch``): a deep copy finished as ``fit`` finishes, its BN
        statistics recalibrated on ``obs`` and in eval mode. No epoch has a learning-rate schedule,
        so it is the model a fit of the epochs done so far returns (bit for bit on the CPU; on CUDA as far
        as its kernels are deterministic) when the random
        state it draws from is the fit's (callers fork it: the fit goes on as if nothing was taken)."""
        compiled = self.__dict__.pop("_compiled", None)  # compiled wrappers of *these* networks: not copied
        try:
            fitted = copy.deepcopy(self)
        finally:
            if compiled is not None:
                self.__dict__["_compiled"] = compiled
        fitted._recalibrate(obs)
        return fitted

    def _start_fit(self, obs: Observations) -> FitState:
        """Build the networks as fitted attributes ``<name>_`` in train mode; a subclass extends
        this (``super()._start_fit(obs)`` first) with optimisers and persistent state."""
        for name, net in self._networks_for(obs.image_shape, obs.device).items():
            setattr(self, f"{name}_", net.train())
        return FitState()

    @abstractmethod
    def _train_step(self, state: FitState, obs_b: Observations, idx: Tensor) -> Tensor:
        """One optimisation step on the mini-batch ``obs_b`` (training images ``idx``, (B,));
        returns its batch-mean loss, detached: a 0-d tensor, or one entry per loss (a GAN's)."""

    def _calibration_inputs(self, name: str, obs: Observations) -> Tensor | None:
        """The inputs over which network ``name``'s BN statistics are recomputed after training
        (what it was trained on), or None to leave them. Called in ``networks`` order, each network
        in eval mode once calibrated."""
        return None

    def _recalibrate(self, obs: Observations) -> None:
        """Exact BN statistics for the final weights ("precise BN"), then eval mode: inference is
        then independent of the batch an image is in."""
        for name in self.networks:
            net = getattr(self, f"{name}_")
            inputs = self._calibration_inputs(name, obs)
            if inputs is not None:
                recalibrate_batchnorm(net, inputs, self.config.eval_batch_size)
            net.eval()

    def _fit_desc(self) -> str:
        return f"{type(self).__name__.lower()} fit"

    def _adam(self, params: Iterable[nn.Parameter]) -> torch.optim.Adam:
        """Adam with the config's ``lr`` and ``beta1`` (the optimiser every backbone model uses)."""
        return torch.optim.Adam(params, lr=self.config.lr, betas=(self.config.beta1, 0.999))

    # -- networks ---------------------------------------------------------------------------
    @abstractmethod
    def _build_networks(self, image_shape: ImageShape, device: torch.device) -> dict[str, nn.Module]:
        """Freshly initialised networks on ``device``, by name, in ``networks`` order."""

    def _networks_for(self, image_shape: ImageShape, device: torch.device) -> dict[str, nn.Module]:
        nets = self._build_networks(tuple(image_shape), device)
        if tuple(nets) != tuple(self.networks):
            raise TypeError(f"{type(self).__name__}._build_networks returned {list(nets)}, "
                            f"its networks are {list(self.networks)}")
        return nets

    @torch.inference_mode()
    def decode(self, z: Tensor) -> Tensor:
        self._check_fitted()
        z = z.to(self.device_)
        return torch.cat([self.generator_(z[b]) for b in self._batches(len(z), self.config.eval_batch_size)])

    def density(self) -> Any:
        """The shared Gaussian observation model on the fitted generator: y = A g(z) + N(0, sigma^2 I)
        (``config.sigma``); ``tasks/likelihood.py`` estimates log p(y) by AIS on it."""
        from genbench.density import Density

        from genbench.model import frozen

        self._check_fitted()
        g = self.generator_.eval()

        def decode(z: Tensor) -> Tensor:
            with frozen(g):  # gradients w.r.t. z only: no graph through the weights
                return g(z.to(self.device_)).float()

        return Density(latent_dim=self.config.latent_dim, decode=decode, sigma=self.config.sigma,
                       iwae=self._iwae(), note=self._density_note())

    def _iwae(self) -> Any:
        """An importance-weighted bound ``(obs, k, generator) -> (N,)`` where the model has an encoder."""
        return None

    def _density_note(self) -> str:
        return ""

    def _fast(self, net: torch.nn.Module) -> torch.nn.Module:
        """``net`` as fit and infer call it: ``torch.compile(net)`` when ``config.compile`` (one
        compiled wrapper per network, sharing its weights; save and load use ``net`` itself)."""
        if not self.config.compile:
            return net
        cache = self.__dict__.setdefault("_compiled", {})
        if id(net) not in cache:
            cache[id(net)] = (net, torch.compile(net))  # net kept so its id is not reused
        return cache[id(net)][1]

    def _autocast(self) -> AbstractContextManager:
        """bf16 autocast for the forward passes when ``config.amp`` and the data is on CUDA."""
        return autocast(self.device_, self.config.amp)

    # -- persistence ------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Each network's state dict under its name, the image shape and the loss history."""
        nets = {name: getattr(self, f"{name}_").state_dict() for name in self.networks}
        return {**nets, "image_shape": list(self.image_shape_),
                "history": torch.tensor(self.history_, device="cpu")}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Rebuild the networks where the saved weights were loaded (``torch.load``'s
        ``map_location``), so a checkpoint loaded onto a GPU runs there; eval mode."""
        self.image_shape_ = tuple(int(s) for s in state["image_shape"])
        nets = self._networks_for(self.image_shape_, state_device(state[self.networks[0]]))
        for name, net in nets.items():
            net.load_state_dict(state[name])
            setattr(self, f"{name}_", net.eval())
        self.device_ = next(nets[self.networks[0]].parameters()).device
        self.history_ = state["history"].tolist()
