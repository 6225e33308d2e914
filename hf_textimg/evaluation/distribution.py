"""Distribution metrics between two sets of image features: KID, FID, and precision / recall /
density / coverage.

The formulas are the published ones (KID: Bińkowski et al. 2018, the unbiased MMD^2 with the cubic
polynomial kernel averaged over random subsets, as torch-fidelity computes it; FID: Heusel et al.
2017; PRDC: Naeem et al. 2020 with k nearest neighbours). They are written out in numpy here because
the libraries that ship them (torch-fidelity, prdc) bring Inception weights or scikit-learn, and the
package computes them on its own weight-free features (`image_features`), never on Inception's.
Values are therefore NOT comparable to published FID / KID numbers.
"""

from __future__ import annotations

import numpy as np

__all__ = ["kid", "fid", "prdc", "distribution_metrics"]


def kid(real: np.ndarray, fake: np.ndarray, subset_size: int = 1000, num_subsets: int = 100, seed: int = 0) -> tuple[float, float]:
    """Kernel Inception Distance on given features: (mean, std) of the unbiased MMD^2 over random subsets,
    kernel k(x, y) = (x.y / d + 1)^3. Subsets are drawn without replacement, of min(subset_size, n) rows."""
    rng = np.random.default_rng(seed)
    m = min(subset_size, len(real), len(fake))
    if m < 2:
        raise ValueError(f"KID needs at least 2 real and 2 generated samples, got {len(real)} and {len(fake)}.")
    d = real.shape[1]
    values = []
    for _ in range(num_subsets):
        x = real[rng.choice(len(real), m, replace=False)].astype(np.float64)
        y = fake[rng.choice(len(fake), m, replace=False)].astype(np.float64)
        kxx, kyy, kxy = ((x @ x.T) / d + 1) ** 3, ((y @ y.T) / d + 1) ** 3, ((x @ y.T) / d + 1) ** 3
        mmd = (kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1)) - 2 * kxy.mean()
        values.append(mmd)
    return float(np.mean(values)), float(np.std(values))


def _sqrt_psd(matrix: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh(matrix)
    return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


def fid(real: np.ndarray, fake: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to the two feature sets (biased for small sets: compare
    only figures computed with the same number of samples).

    tr(sqrt(S1 S2)) is computed as the trace of sqrt(S1^1/2 S2 S1^1/2), a symmetric PSD matrix, so a
    singular covariance (a set of identical images) needs no regularisation.
    """
    mu1, mu2 = real.mean(0), fake.mean(0)
    s1, s2 = np.cov(real.astype(np.float64), rowvar=False), np.cov(fake.astype(np.float64), rowvar=False)
    root = _sqrt_psd(s1)
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(root @ s2 @ root), 0, None)).sum()
    return max(0.0, float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * cross))  # >= 0 up to rounding


def _pairwise(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    sq = (a**2).sum(1)[:, None] + (b**2).sum(1)[None, :] - 2 * a @ b.T
    return np.sqrt(np.maximum(sq, 0))


def _knn_radius(x: np.ndarray, k: int) -> np.ndarray:
    d = _pairwise(x, x)
    return np.partition(d, k, axis=1)[:, k]  # column 0 is the point itself (distance 0)


def prdc(real: np.ndarray, fake: np.ndarray, k: int = 5) -> dict[str, float]:
    """Precision, recall, density and coverage (Naeem et al. 2020) with k-NN balls in feature space."""
    if min(len(real), len(fake)) <= k:
        raise ValueError(f"PRDC with k={k} needs more than {k} real and generated samples, got {len(real)} and {len(fake)}.")
    real, fake = real.astype(np.float64), fake.astype(np.float64)
    real_radius, fake_radius = _knn_radius(real, k), _knn_radius(fake, k)
    d = _pairwise(real, fake)  # (R, F)
    inside_real = d <= real_radius[:, None]  # fake j inside real i's ball
    return {
        "precision": float(inside_real.any(0).mean()),
        "recall": float((d <= fake_radius[None, :]).any(1).mean()),
        "density": float(inside_real.sum() / (k * len(fake))),
        "coverage": float((d.min(1) <= real_radius).mean()),
    }


def distribution_metrics(real: np.ndarray, fake: np.ndarray, k: int = 5, seed: int = 0) -> dict[str, float]:
    """KID (mean, std), FID and PRDC of `fake` against `real` features, (N, D) each. PRDC's k shrinks to
    fit sets of k samples or fewer (tiny test runs); the k used is returned."""
    kid_mean, kid_std = kid(real, fake, seed=seed)
    k = max(1, min(k, len(real) - 1, len(fake) - 1))
    return {"kid": kid_mean, "kid_std": kid_std, "fid": fid(real, fake), **prdc(real, fake, k=k), "k": k}
