"""Do the samples look like the data? Sample quality and mode coverage of every model that can sample.

``n_samples`` draws of ``model.sample`` (seeded by the fit: vae-refine shares vae's decoder, so its
samples and scores are vae's, computed once) against the clean test images of the run (``n_eval`` at
most), both embedded by the run's feature net (:mod:`genbench.features`: a LeNet trained on the training
split, or a random one where the data has no labels, named in every row). Metrics
(:mod:`genbench.sample_quality`): ``fid``, ``kid``, ``precision``, ``recall``, ``density``, ``coverage``
(k = 5 neighbours) and, from the classifier's labels of the samples, ``classes_covered``,
``label_entropy`` and ``label_kl`` (KL of the samples' label histogram to the test images', nats).
Models that cannot sample (the reference methods) get ``unsupported`` rows.

The features are divided by one number, the root-mean-square of the test images' features, so that FID
and KID are in units of the feature net's own scale: comparable across seeds (each seed trains its own
net) and of order one where KID's cubic kernel expects it; precision, recall, density and coverage do
not change under it. FID is biased by the sample count: compare rows of one ``n_samples`` and one test-set size (both are in
every row's message). The floor, what held-out data itself scores, is that of training images against
the test images (``benchmarks/samples_floor.py``).

Parameters (``--set task.samples.<name>=...``): ``n_samples`` (default 1000), ``feature_epochs`` (epochs
of the LeNet, default 10: test accuracy 0.964 on mnist5k's 4000 / 1000 digits, 25 s on 2 cores), ``kid_subsets`` (100) and ``kid_subset_size`` (1000, at most the counts),
``batch_size`` (images per feature pass, 500; changes no number beyond float rounding).
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor

from genbench.features import FeatureNet, feature_net
from genbench.metrics import Metric
from genbench.model import DivergenceError
from genbench.operators import Identity, ImageShape
from genbench.planning import derive_seed
from genbench.registry import register_metric, register_task
from genbench.results import config_hash
from genbench.sample_quality import fid, kid, mode_coverage, prdc
from genbench.task import CLEAN_TRAIN, RANGE_TOLERANCE, EvalContext, SplitResult, Task, Variant

SAMPLE_CHUNK = 500  # samples drawn per model.sample call (fixed: the draws do not depend on batch_size)
MODE_METRICS = ("classes_covered", "label_entropy", "label_kl")

for _metric in (
    Metric("fid", "Fréchet distance of sample and test features (lower is better; biased by sample count)",
           higher_is_better=False, unit="FID", decimals=2, needs="model", plot=True),
    Metric("kid", "kernel (MMD^2, cubic kernel) distance of sample and test features, unbiased",
           higher_is_better=False, unit="KID", decimals=4, needs="model"),
    Metric("precision", "share of samples inside the test images' 5-NN balls (fidelity)",
           higher_is_better=True, unit="precision", decimals=3, needs="model"),
    Metric("recall", "share of test images inside the samples' 5-NN balls (diversity)",
           higher_is_better=True, unit="recall", decimals=3, needs="model"),
    Metric("density", "mean number of test 5-NN balls holding a sample, / 5", higher_is_better=True,
           unit="density", decimals=3, needs="model"),
    Metric("coverage", "share of test 5-NN balls holding a sample", higher_is_better=True, unit="coverage",
           decimals=3, needs="model"),
    Metric("classes_covered", "classes the samples fall in (at least half their test share)",
           higher_is_better=True, unit="classes", decimals=1, needs="model"),
    Metric("label_entropy", "entropy of the samples' class histogram, nats", higher_is_better=True,
           unit="nats", decimals=3, needs="model"),
    Metric("label_kl", "KL(samples' class histogram || test images'), nats", higher_is_better=False,
           unit="nats", decimals=3, needs="model"),
):
    register_metric(_metric)


@register_task("samples")
class Samples(Task):
    """FID, KID, precision/recall, density/coverage and mode coverage of ``model.sample``."""

    name = "samples"
    splits = {CLEAN_TRAIN: ("test",)}
    metrics = ("fid", "kid", "precision", "recall", "density", "coverage", *MODE_METRICS)
    default_params = {"n_samples": 1000, "feature_epochs": 10, "kid_subsets": 100, "kid_subset_size": 1000,
                      "batch_size": 500}
    dry_run_caps = {"n_samples": 64, "feature_epochs": 1, "kid_subsets": 10}

    def variants(self, image_shape: ImageShape) -> list[Variant]:
        for key in self.default_params:
            value = self.params[key]
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"task.samples.{key} must be a positive integer, got {value!r}")
        if self.params["n_samples"] < 6:
            raise ValueError(f"task.samples.n_samples must be at least 6 (5 nearest neighbours), "
                             f"got {self.params['n_samples']}")
        return [Variant("prior", lambda shape, seed: Identity(seed), protocols=(CLEAN_TRAIN,))]

    def evaluate(self, ctx: EvalContext, split: str) -> SplitResult:
        """Scores are a property of the fit (vae-refine samples vae's decoder): computed once per fit."""
        wanted = self.metrics_for(split)
        if not ctx.model.capabilities.samples:
            return SplitResult({}, 0, unsupported={m: f"{type(ctx.model).__name__} cannot sample" for m in wanted})
        key = (self.name, tuple(sorted(self.params.items())), ctx.seed)
        reused = key in ctx.fit_cache
        if not reused:
            ctx.fit_cache[key] = self._score(ctx, wanted)
        result = ctx.fit_cache[key]
        if reused:
            note = "; scored once for the fit this model shares (same samples)"
            result = dataclasses.replace(result, notes={m: n + note for m, n in result.notes.items()})
        return result

    def features(self, ctx: EvalContext) -> FeatureNet:
        """The run's feature net for this cell's seed (trained once per data settings and seed)."""
        data = ctx.data
        if data is None:
            raise ValueError("the samples task needs the run's data (EvalContext.data): run it through the Runner")
        epochs = self.params["feature_epochs"]
        file_key = config_hash({"data": data.key, "seed": ctx.seed, "epochs": epochs})
        return feature_net(data.splits["train"], data.labels.get("train"), data.splits["test"],
                           data.labels.get("test"), epochs=epochs, seed=derive_seed(ctx.seed, "features", data.key),
                           cache=data.cache, key=("features", file_key), folder=data.folder, file_key=file_key)

    def _score(self, ctx: EvalContext, wanted: tuple[str, ...]) -> SplitResult:
        p = self.params
        net = self.features(ctx)
        real = ctx.clean["test"]
        t0 = ctx.clock()
        fake = self._draw(ctx, p["n_samples"])
        seconds = ctx.clock() - t0
        phi_real, scale = self._embedded(ctx, net, real)
        phi_fake = net.embed(fake, p["batch_size"]) / scale
        scores = {"fid": fid(phi_real, phi_fake),
                  "kid": kid(phi_real, phi_fake, subsets=p["kid_subsets"], subset_size=p["kid_subset_size"],
                             seed=derive_seed(ctx.fit_seed, self.name, "kid")),
                  **prdc(phi_real, phi_fake)}
        unsupported = {}
        test_labels = ctx.data.labels.get("test")
        if net.n_classes and test_labels is not None:
            scores.update(mode_coverage(net.classify(fake, p["batch_size"]), test_labels[: len(real)],
                                        net.n_classes))
        else:
            unsupported = {m: "the data has no labels: no classifier to count classes with" for m in MODE_METRICS}
        note = f"{len(fake)} samples vs {len(real)} test images; {net.describe()}"
        return SplitResult({m: v for m, v in scores.items() if m in wanted}, len(fake), seconds / len(fake), 0,
                           unsupported=unsupported, notes={m: note for m in wanted if m in scores})

    def _draw(self, ctx: EvalContext, n: int) -> Tensor:
        """``n`` samples, seeded by the fit (``ctx.fit_seed``), checked finite and in [-1, 1]."""
        devices = [ctx.device] if ctx.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(derive_seed(ctx.fit_seed, self.name, "draw"))
            x = torch.cat([ctx.model.sample(min(SAMPLE_CHUNK, n - i)).detach() for i in range(0, n, SAMPLE_CHUNK)])
        name = type(ctx.model).__name__
        shape = tuple(ctx.clean["test"].shape[1:])
        if x.shape != (n, *shape):
            raise ValueError(f"{name}.sample returned shape {tuple(x.shape)}, expected {(n, *shape)}")
        if not bool(torch.isfinite(x).all()):
            raise DivergenceError(f"{name}.sample returned non-finite values (NaN or inf)")
        low, high = float(x.min()), float(x.max())
        if low < -1 - RANGE_TOLERANCE or high > 1 + RANGE_TOLERANCE:
            raise DivergenceError(f"{name}.sample returned values in [{low:.4g}, {high:.4g}]; images are in [-1, 1]")
        return x

    def _embedded(self, ctx: EvalContext, net: FeatureNet, real: Tensor) -> tuple[Tensor, Tensor]:
        """The test images' features divided by their root-mean-square, and that scale (every model of the
        run shares them: computed once per feature net and image count)."""
        key = ("test features", net.key, len(real))
        if key not in ctx.data.cache:
            phi = net.embed(real, self.params["batch_size"])
            scale = phi.square().mean().sqrt().clamp_min(1e-12)
            ctx.data.cache[key] = (phi / scale, scale)
        return ctx.data.cache[key]
