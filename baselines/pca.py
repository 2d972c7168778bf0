"""Principal component analysis as a latent model: the linear baseline of the ABP paper
(Han, Lu, Zhu, Wu, "Alternating Back-Propagation for Generator Network", AAAI 2017, Sec. 5.2).

Model: x = mu + W z with W (D, d) orthonormal columns (the top ``latent_dim`` principal
directions of the training images, D = C * H * W pixels) and z (d,) the latent factors; read
probabilistically (Tipping & Bishop, "Probabilistic principal component analysis", JRSS-B
1999): x = mu + W z + eps, z_j ~ N(0, lambda_j - sigma^2), eps ~ N(0, sigma^2 I), with lambda_j
the explained variances and sigma^2 the mean variance of the discarded directions
(scikit-learn's ``noise_variance_``).

**Recovery** (one routine for every operator). An image observed as y = A(x) is recovered by
regularised least squares in the subspace, r = ``ridge``::

    z = argmin_z ||y - A(mu + W z)||^2 + r * sum_j sigma^2 / (lambda_j - sigma^2) * z_j^2
      = (M^T M + r P)^{-1} M^T (y - A mu),     M = A W  (D_y, d),  P = diag(sigma^2 / (lambda_j - sigma^2))

With r = 1 this is the posterior mean of z for masks (and for a projection whose rows are
orthonormal); r = 0 is plain least squares. The prior is scaled by the data, so one default
suits 8x8 and 28x28 digits alike (an isotropic r ||z||^2 needs a different r per data set):
recovering occluded pixels with d = 20, r = 1 has a third to half less error than r = 0 on 8x8
digits and is within 1 % (pixel masks) or 5 % better (block masks) on 28x28 MNIST. Fully
observed images (no mask, A(y) = y) miss nothing and are recovered by the orthogonal projection
z = W^T (x - mu), PCA's own reconstruction (scikit-learn's ``transform``), whatever r.

M is built through the operator itself (A applied to the d columns of W seen as images), so any
linear operator works. Without a mask the operator is shared by all images and so are M and the
(d, d) normal matrix; with a mask, M_i = A_i W is built per image and the (B, d, d) systems are
solved batched.

**Learning.** Clean images (no mask, y image-shaped and A(y) = y): exact PCA, the SVD of the
centred data. Otherwise the images are missing data and fit runs EM for probabilistic PCA
(Roweis, "EM algorithms for PCA and SPCA", NIPS 1998; Tipping & Bishop 1999), alternating

1. E-step: recover each image from its observation with the current model: the posterior mean
   E[x_i | y_i] keeps what y_i shows and fills the rest from the subspace (for a mask: the
   observed entries are y's own, never changed, the occluded ones mu + W E[z_i]; for a shared
   operator: A^+ y_i + N (mu + W E[z_i]) with N = I - A^+ A), and the posterior covariance
   N_i (W Cov[z_i] W^T + sigma^2 I) N_i of what y_i does not show;
2. M-step: refit PCA on the recovered images, to the expected scatter
   sum_i (E[x_i] - mu)(E[x_i] - mu)^T + Cov[x_i] (the maximum-likelihood fit),

until the recovered images change by less than ``tol`` (relative) or after ``em_iters`` rounds.
Unlike re-imputing the missing entries alone ("hard" imputation, which overfits as more is
missing), each round provably raises the likelihood of the observations. EM starts from the
PCA of initial images: for masks the observed entries with the occluded ones at the observed
per-pixel mean (0 where a pixel is never observed), for other operators the naive inverse
(A^T y for projections). The M-step forms a (D, D) scatter: fine for up to a few thousand
pixels.

Limitation: a projection shared by all images never shows the part of the data in A's null
space, so no model of A x can learn it; PCA learned from projections stays in A's row space
(mean image included) and recovers about what the minimum-norm solution A^+ y does: better
than the naive inverse, worse than the mean of the clean images.

Shapes: ``infer`` -> (N, d) float32, ``decode`` -> (N, C, H, W) float32, on the observations'
device; fitted state in float64: ``mean_`` (D,), ``components_`` (d, D) (orthonormal rows, as in
scikit-learn), ``explained_variance_`` (d,), ``noise_variance_`` ().

Example::

    >>> from genbench.operators import PixelMask
    >>> op = PixelMask(p=0.5, seed=0)
    >>> model = PCA(PCAConfig(latent_dim=10)).fit(op.observe(x_train))
    >>> x_hat = model.reconstruct(op.observe(x_test))
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from torch import Tensor

from genbench.model import Capabilities, LatentModel, ModelConfig, check_finite, progress
from genbench.operators import Observations, Operator
from genbench.space import FloatRange
from genbench.registry import register_model

_DTYPE = torch.float64   # fitted state and linear algebra; operators run in the data's dtype
_BLOCK = 2 ** 23         # scalars per block of per-image operator matrices (64 MB in float64)


@dataclass(frozen=True)
class PCAConfig(ModelConfig):
    """PCA hyper-parameters; the defaults work on every embedded data set."""

    latent_dim: int = 10
    ridge: float = 1.0        # weight of the PPCA prior in recovery: 1 = posterior mean, 0 = least squares
    em_iters: int = 50        # EM rounds when the images are not observed whole
    tol: float = 1e-4         # stop EM when ||x_new - x|| / ||x|| of the recovered images is below
    eval_batch_size: int = 500

    # what the tuner searches (genbench.tuning; the default lies inside the range)
    search_space = {"ridge": FloatRange(0.0, 2.0)}

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.ridge >= 0:
            raise ValueError(f"PCA ridge must be >= 0, got {self.ridge}")
        if not self.tol >= 0:
            raise ValueError(f"PCA tol must be >= 0, got {self.tol}")
        for name in ("em_iters", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"PCA {name} must be >= 1, got {getattr(self, name)}")


def _orient(components: Tensor) -> Tensor:
    """Flip each row (d, D) so that its largest-magnitude entry is positive: the result does not
    depend on the SVD's or eigensolver's sign choices."""
    return components * torch.sign(components.gather(1, components.abs().argmax(1, keepdim=True)))


def _split(variance: Tensor, d: int) -> tuple[Tensor, Tensor]:
    """Top-d variances and the noise variance: the mean of the others (0 if none)."""
    noise = variance[d:].mean() if len(variance) > d else variance.new_zeros(())
    return variance[:d], noise


def principal_subspace(x: Tensor, d: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Exact PCA of the rows of x (N, D), as scikit-learn's PCA: mean (D,), components (d, D),
    explained variance (d,) = singular value^2 / (N - 1), noise variance () = the mean of the
    other min(N, D) - d variances."""
    mean = x.mean(0)
    _, s, vh = torch.linalg.svd(x - mean, full_matrices=False)
    return (mean, _orient(vh[:d]), *_split(s.square() / max(x.shape[0] - 1, 1), d))


def expected_subspace(x: Tensor, scatter: Tensor, d: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The M-step of EM for probabilistic PCA: the maximum-likelihood fit (Tipping & Bishop
    1999) to the expected scatter S = [(x - mean)^T (x - mean) + scatter] / N, for expected
    images x (N, D) and summed posterior covariances ``scatter`` (D, D): the top-d eigenpairs of
    S and the mean of its other D - d eigenvalues. Outputs as :func:`principal_subspace`."""
    mean = x.mean(0)
    centred = x - mean
    variance, vectors = torch.linalg.eigh((centred.T @ centred + scatter) / x.shape[0])
    variance, vectors = variance.flip(0).clamp_min(0.0), vectors.flip(1)
    return (mean, _orient(vectors[:, :d].T), *_split(variance, d))


def _apply(op: Operator, x: Tensor, mask: Tensor | None, dtype: torch.dtype) -> Tensor:
    """A(x) flattened to (B, D_y) in float64; the operator runs in the observations' dtype."""
    return op.apply(x.to(dtype), mask).flatten(1).to(_DTYPE)


def _solve(gram: Tensor, rhs: Tensor, penalty: Tensor) -> Tensor:
    """z = (gram + diag(penalty))^{-1} rhs for gram (..., d, d), rhs (..., d, k), penalty (d,)."""
    try:
        return torch.linalg.solve(gram + torch.diag(penalty), rhs)
    except torch.linalg.LinAlgError as exc:
        raise ValueError(f"PCA recovery: the observations do not determine all {gram.shape[-1]} latent "
                         f"factors (singular normal equations); set ridge > 0 (recovery) or lower "
                         f"latent_dim") from exc


@register_model("pca", description="PCA; EM for probabilistic PCA on corrupted data "
                               "(Roweis 1998, Tipping & Bishop 1999)")
class PCA(LatentModel):
    """Principal component analysis, learned from and recovering through any linear operator."""

    Config = PCAConfig
    capabilities = Capabilities(learns_null_space=False)  # closed-form recovery through any linear operator
    loss_name = "EM: relative change of the recovered images"  # what history_ holds, per EM iteration
    dry_run_overrides = {"em_iters": 1}
    config: PCAConfig

    # -- learning ---------------------------------------------------------------------------
    def fit(self, obs: Observations) -> PCA:
        self._check_obs(obs, fitting=True)
        self._check_latent_dim(len(obs), math.prod(obs.image_shape))
        self._set_fitted(obs)
        self.history_: list[float] = []
        if self._fully_observed(obs):
            self._set_subspace(*principal_subspace(obs.y.flatten(1).to(_DTYPE), self.config.latent_dim))
        else:
            self._em(obs)
        return self

    def _check_latent_dim(self, n: int, dim: int) -> None:
        if self.config.latent_dim > min(n, dim):
            raise ValueError(f"PCA latent_dim={self.config.latent_dim} is larger than min(N, D) = "
                             f"min({n} images, {dim} pixels) = {min(n, dim)}, the most principal "
                             f"components the data has; lower latent_dim or fit on more images")

    @staticmethod
    def _fully_observed(obs: Observations) -> bool:
        """No mask, image-shaped y and A(y) = y: the observations are the images themselves."""
        if obs.mask is not None or tuple(obs.y.shape[1:]) != tuple(obs.image_shape):
            return False
        probe = obs.y[:8]
        return torch.equal(obs.op.apply(probe, None), probe)

    def _set_subspace(self, mean: Tensor, components: Tensor, variance: Tensor, noise: Tensor) -> None:
        check_finite(components, "PCA components")
        self.mean_, self.components_, self.explained_variance_ = mean, components, variance
        self.noise_variance_ = noise

    def _em(self, obs: Observations) -> None:
        """EM from the PCA of the initial images: E-step expected images and covariances, M-step
        PCA of the expected scatter, until the expected images change by less than ``tol``."""
        x = self._initial_images(obs)
        self._set_subspace(*principal_subspace(x, self.config.latent_dim))
        e_step = partial(self._masked_e_step, obs) if obs.mask is not None else self._shared_e_step(obs)
        for _ in progress(range(self.config.em_iters), desc="pca em"):  # a bar on a terminal
            x_new, scatter = e_step()
            self._set_subspace(*expected_subspace(x_new, scatter, self.config.latent_dim))
            self.history_.append(((x_new - x).norm() / x.norm().clamp_min(1e-12)).item())
            x = x_new
            if self.history_[-1] < self.config.tol:
                break

    def _initial_images(self, obs: Observations) -> Tensor:
        """Masks: observed entries, occluded ones at the observed per-pixel mean (0 if never
        observed). Other operators: the naive inverse."""
        if obs.mask is None:
            return obs.naive_inverse().flatten(1).to(_DTYPE)
        keep = self._keep(obs)
        pixel_mean = (keep * obs.y.flatten(1)).sum(0) / keep.sum(0).clamp_min(1.0)
        return keep * obs.y.flatten(1) + (1 - keep) * pixel_mean

    @staticmethod
    def _keep(obs: Observations) -> Tensor:
        """The mask per entry (N, D) in float64, 1 = observed (shared by the channels)."""
        return obs.mask.expand(-1, obs.image_shape[0], -1, -1).flatten(1).to(_DTYPE)

    def _posterior(self, gram: Tensor, rhs: Tensor) -> tuple[Tensor, Tensor]:
        """Posterior mean (..., d, k) and covariance (..., d, d) of z under the model's prior."""
        prior = self._prior_weights()
        z = _solve(gram, rhs, prior)
        return z, self.noise_variance_ * torch.linalg.inv(gram + torch.diag(prior))

    def _masked_e_step(self, obs: Observations) -> tuple[Tensor, Tensor]:
        """Masks: E[x_i] keeps the observed entries and fills the occluded ones with mu + W E[z_i];
        the occluded block of Cov[x_i] is W Cov[z_i] W^T + sigma^2 I."""
        dim = math.prod(obs.image_shape)
        scatter = torch.zeros(dim, dim, dtype=_DTYPE, device=obs.device)
        x_hat = []
        for batch in self._batches(len(obs), self._masked_batch_size(obs)):
            obs_b = obs[batch]
            gram, rhs = self._masked_system(obs_b)
            z, cov = self._posterior(gram, rhs)
            keep = self._keep(obs_b)
            x_hat.append(keep * obs_b.y.flatten(1) + (1 - keep) * self._decode_flat(z.squeeze(-1)))
            w_miss = (1 - keep).unsqueeze(-1) * self.components_.T            # (B, D, d): P_i W
            left = (w_miss @ cov).transpose(0, 1).reshape(dim, -1)            # (D, B * d)
            scatter += left @ w_miss.transpose(0, 1).reshape(dim, -1).T
            scatter += torch.diag(self.noise_variance_ * (1 - keep).sum(0))
        return torch.cat(x_hat), scatter

    def _shared_e_step(self, obs: Observations) -> Callable[[], tuple[Tensor, Tensor]]:
        """A shared operator A (D_y, D), N = I - A^+ A its null-space projector: the noise seen
        through A has covariance sigma^2 A A^T, so z's posterior weighs residuals by (A A^T)^+;
        E[x_i] = A^+ y_i + N (mu + W E[z_i]) and Cov[x_i] = N (W Cov[z] W^T + sigma^2 I) N."""
        a = self._operator_matrix(obs)                          # (D_y, D)
        a_pinv = torch.linalg.pinv(a)                           # (D, D_y)
        null = torch.eye(a.shape[1], dtype=_DTYPE, device=obs.device) - a_pinv @ a
        metric = torch.linalg.pinv(a @ a.T)                     # (D_y, D_y)
        y = obs.y.flatten(1).to(_DTYPE)

        def e_step() -> tuple[Tensor, Tensor]:
            m = self.components_ @ a.T                          # (d, D_y) = (A W)^T
            residual = y - self.mean_ @ a.T                     # (N, D_y)
            z, cov = self._posterior(m @ metric @ m.T, m @ metric @ residual.T)
            w_null = null @ self.components_.T                  # (D, d)
            scatter = w_null @ cov @ w_null.T + self.noise_variance_ * null
            return y @ a_pinv.T + self._decode_flat(z.T) @ null, len(obs) * scatter

        return e_step

    @staticmethod
    def _operator_matrix(obs: Observations) -> Tensor:
        """The matrix (D_y, D) of a shared operator, from A applied to the pixel basis images."""
        dim = math.prod(obs.image_shape)
        columns = []
        for block in LatentModel._batches(dim, max(1, _BLOCK // dim)):
            idx = torch.arange(block.start, block.stop, device=obs.device)
            basis = torch.nn.functional.one_hot(idx, dim).view(-1, *obs.image_shape)
            columns.append(_apply(obs.op, basis, None, obs.y.dtype))
        return torch.cat(columns).T

    # -- recovery ---------------------------------------------------------------------------
    def infer(self, obs: Observations) -> Tensor:
        self._check_obs(obs)
        z = self._latents(obs)
        check_finite(z, "PCA inferred latents")
        return z.float()

    def _latents(self, obs: Observations) -> Tensor:
        """Recovered latents z (N, d) in float64 (see the module docstring)."""
        penalty = self._penalty(obs)
        if obs.mask is None:
            gram, rhs = self._shared_system(obs)
            return _solve(gram, rhs.T, penalty).T
        return torch.cat([_solve(*self._masked_system(obs[b]), penalty).squeeze(-1)
                          for b in self._batches(len(obs), self._masked_batch_size(obs))])

    def _prior_weights(self) -> Tensor:
        """sigma^2 / (lambda_j - sigma^2) (d,): the prior z_j ~ N(0, lambda_j - sigma^2) of
        probabilistic PCA against noise of variance sigma^2 (capped at 1 / eps, where
        lambda_j = sigma^2 and z_j is pinned to 0; 0 when sigma^2 = 0)."""
        finfo = torch.finfo(_DTYPE)
        noise = self.noise_variance_
        return noise / (self.explained_variance_ - noise).clamp_min(finfo.eps * noise + finfo.tiny)

    def _penalty(self, obs: Observations) -> Tensor:
        """ridge * the prior weights, or 0 for fully observed images (the projection)."""
        if self._fully_observed(obs):
            return torch.zeros_like(self.explained_variance_)
        return self.config.ridge * self._prior_weights()

    def _shared_system(self, obs: Observations) -> tuple[Tensor, Tensor]:
        """Normal equations of an operator shared by all images: M^T M (d, d), M^T (y_i - A mu) (N, d)."""
        m = _apply(obs.op, self._basis_images(), None, obs.y.dtype)         # (d, D_y) = (A W)^T
        a_mu = _apply(obs.op, self._mean_image()[None], None, obs.y.dtype)  # (1, D_y)
        return m @ m.T, (obs.y.flatten(1).to(_DTYPE) - a_mu) @ m.T

    def _masked_system(self, obs: Observations) -> tuple[Tensor, Tensor]:
        """Per-image normal equations for a batch with masks, M_i = A_i W: (B, d, d), (B, d, 1)."""
        n, d = len(obs), self.config.latent_dim
        basis = self._basis_images().repeat(n, 1, 1, 1)                 # (B * d, C, H, W)
        m = _apply(obs.op, basis, obs.mask.repeat_interleave(d, 0), obs.y.dtype).view(n, d, -1)
        a_mu = _apply(obs.op, self._mean_image().expand(n, -1, -1, -1), obs.mask, obs.y.dtype)
        return m @ m.transpose(1, 2), m @ (obs.y.flatten(1).to(_DTYPE) - a_mu).unsqueeze(-1)

    def _masked_batch_size(self, obs: Observations) -> int:
        per_image = self.config.latent_dim * max(obs.y[0].numel(), math.prod(obs.image_shape))
        return max(1, min(self.config.eval_batch_size, _BLOCK // per_image))

    def _basis_images(self) -> Tensor:
        return self.components_.view(-1, *self.image_shape_)  # the columns of W as images

    def _mean_image(self) -> Tensor:
        return self.mean_.view(self.image_shape_)

    # -- generation -------------------------------------------------------------------------
    def _decode_flat(self, z: Tensor) -> Tensor:
        return self.mean_ + z.to(self.mean_) @ self.components_  # (N, D)

    def decode(self, z: Tensor) -> Tensor:
        self._check_fitted()
        return self._decode_flat(z).float().view(-1, *self.image_shape_)

    def density(self) -> Any:
        """Probabilistic PCA's exact density (Tipping & Bishop 1999) with its own noise variance:
        x = mu + W z + eps, W = components^T diag(sqrt(lambda_j - sigma^2)), eps ~ N(0, sigma^2 I)."""
        from genbench.ais import ppca_log_likelihood
        from genbench.density import Density

        self._check_fitted()
        sigma2 = float(self.noise_variance_)
        if not sigma2 > 0:
            return None
        W = self.components_.T * (self.explained_variance_ - sigma2).clamp_min(0).sqrt()  # (D, d)
        mu = self.mean_
        return Density(exact=lambda obs: ppca_log_likelihood(W, mu, sigma2 ** 0.5, obs),
                       note=f"exact probabilistic-PCA density, noise std {sigma2 ** 0.5:.4g} (PCA's own)")

    def sample(self, n: int) -> Tensor:
        """n draws: decode z ~ N(0, diag(explained variance)), the spread of the data's factors."""
        self._check_fitted()
        z = torch.randn(n, self.config.latent_dim, device=self.device_, dtype=_DTYPE)
        return self.decode(z * self.explained_variance_.sqrt()).clamp(-1.0, 1.0)

    # -- persistence ------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"mean": self.mean_, "components": self.components_,
                "explained_variance": self.explained_variance_, "noise_variance": self.noise_variance_,
                "image_shape": torch.tensor(self.image_shape_, device="cpu"),
                "history": torch.tensor(self.history_, dtype=_DTYPE, device="cpu")}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        components = state["components"]
        if components.shape[0] != self.config.latent_dim:
            raise ValueError(f"PCA state has {components.shape[0]} components, the config asks for "
                             f"latent_dim={self.config.latent_dim}")
        self.image_shape_ = tuple(int(s) for s in state["image_shape"])
        self.mean_, self.components_ = state["mean"].to(_DTYPE), components.to(_DTYPE)
        self.explained_variance_ = state["explained_variance"].to(_DTYPE)
        self.noise_variance_ = state["noise_variance"].to(_DTYPE)
        self.history_ = state["history"].tolist()
        self.device_ = self.mean_.device
