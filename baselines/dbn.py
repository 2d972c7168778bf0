"""Deep belief network: a greedy layer-wise stack of Bernoulli RBMs (Hinton, Osindero & Teh, "A fast
learning algorithm for deep belief nets", Neural Computation 2006; Hinton & Salakhutdinov,
"Reducing the dimensionality of data with neural networks", Science 2006, without the
fine-tuning).

**Model.** Layers 1..L with hidden sizes (``hidden_1``, ``latent_dim``) by default: the top two
layers (h_{L-1}, h_L) form an RBM, the lower ones are directed sigmoid belief layers
p(h_{l-1} | h_l) = sig(W_l^T h_l + b_l), with h_0 = v = (x + 1) / 2 in [0, 1]^D.

**Learning** (greedy): layer 1 is an RBM trained on the visibles exactly as
:class:`baselines.rbm.RBM` (CD-k / PCD-k, momentum, weight decay; stochastic EM when the images
are not fully observed), then layer l + 1 is an RBM trained on layer l's hidden probabilities
p(h_l | h_{l-1}) of the training data (for corrupted data: of the final imputations of layer 1).
Every layer uses the same :class:`DBNConfig` learning settings.

**Recovery**, the RBM's with the stack's mean-field passes, up(v) = p(h_L | ... p(h_1 | v)) and
down(h) = p(v | ... p(h_{L-1} | h)):

- ``infer`` = up(recovered v) (N, latent_dim); ``decode`` = down(z); fully observed images are
  reconstructed as down(up(v));
- masks: observed pixels clamped, missing ones from the training mean image iterated
  ``infer_steps`` times through v_miss <- down(up(v))_miss;
- other operators (random projections): the RBM's projected gradient on
  ||y - A(2v - 1)||^2 / (2 sigma^2) + F_1(v) with F_1 the free energy of the *first* layer (the
  one RBM whose free energy is a prior over pixels; the upper layers enter through ``infer``);
  learning from such data imputes with layer 1 only (stochastic EM) before training the stack.
- ``sample(n)``: ``sample_steps`` Gibbs steps of the top RBM from uniform binary h_{L-1}, then
  its last p(h_{L-1} | h_L) passed down the directed layers (probabilities).

**Measured** (embedded MNIST, 3500 training / 500 validation digits split off the training
images, one seed, 1 CPU thread; validation mae, PCA's in brackets): reconstruction 0.091 (0.091)
at d = 10, 0.075 (0.072) at d = 20, 0.043 (0.030) at d = 100; 50 % missing pixels, clean-trained,
0.095 (0.096), 0.082 (0.078), 0.055 (0.047); fit 17-20 s. Learned from the masked images (d = 20):
0.082 on the occluded validation pixels (50 % pixels), 0.181 (12x12 blocks). Random projections,
clean-trained, d = 20: 0.008 at K = 200 (PCA 0.075), 0.17 at K = 50 (PCA 0.086). ``hidden_1`` =
128 / 256 / 500 gave 0.092 / 0.091 / 0.091 at d = 10 in 10 / 18 / 31 s: 256 is the default.

Example::

    >>> from genbench.operators import Identity
    >>> model = DBN(DBNConfig(latent_dim=20, hidden_1=256)).fit(Identity().observe(x_train))
    >>> z = model.infer(Identity().observe(x_test))        # (N, 20)
    >>> x = model.sample(16)                                # (16, C, H, W)
"""

from __future__ import annotations

from dataclasses import dataclass

from baselines.rbm import RBM, RBMConfig
from genbench.model import Capabilities
from genbench.registry import register_model


@dataclass(frozen=True)
class DBNConfig(RBMConfig):
    """RBM settings shared by every layer, plus the first hidden layer's size."""

    hidden_1: int = 256    # hidden units of layer 1; the top layer has latent_dim

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.hidden_1 < 1:
            raise ValueError(f"DBNConfig hidden_1 must be >= 1, got {self.hidden_1}")


@register_model("dbn", description="Deep belief net: greedy stack of 2 Bernoulli RBMs (Hinton et al. 2006); "
                                   "up/down passes, clamped inpainting")
class DBN(RBM):
    """Two-layer DBN (``hidden_1``, ``latent_dim``); everything else is :class:`~baselines.rbm.RBM`'s."""

    Config = DBNConfig
    capabilities = Capabilities(learns_null_space=False)  # the RBM's: latent code, learns, samples, deterministic inference
    tiny_overrides = {**RBM.tiny_overrides, "hidden_1": 32}
    config: DBNConfig

    def hidden_sizes(self) -> tuple[int, ...]:
        return (self.config.hidden_1, self.config.latent_dim)
