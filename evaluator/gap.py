"""Distribution-gap metrics between a synthetic and a real image set.

Images are embedded with ``RandomConvFeatures`` (a seeded random conv net), then compared with

- the unbiased squared MMD with an RBF kernel ``k(a, b) = exp(-|a - b|² / (2σ²))``, σ from the
  median heuristic;
- the Fréchet distance between Gaussians fitted to the two feature sets (the FID formula, on
  random features rather than Inception ones, so the numbers are only comparable with each other);
- per-synthetic-image witness values, a per-sample reward for a Meta-Sim style controller.

Notation used below, for synthetic features x (m rows) and real features y (n rows)::

    within_x = 1/(m(m-1)) Σ_{i≠j} k(x_i, x_j)      within_y = 1/(n(n-1)) Σ_{i≠j} k(y_i, y_j)
    cross    = 1/(mn)     Σ_{i,j} k(x_i, y_j)
    mmd2_unbiased = within_x + within_y - 2·cross
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.linalg

from evaluator.features import RandomConvFeatures

_MEDIAN_MAX_ROWS = 2000  # the median heuristic looks at most this many pooled rows


# ---------------------------------------------------------------- checks and kernels
def _check_pair(x, y, names=("x", "y"), rows="rows") -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    for name, a in zip(names, (x, y)):
        if a.ndim != 2:
            raise ValueError(f"{name}: expected a 2-D (rows, features) array, got shape {a.shape}")
        if a.shape[0] < 2:
            raise ValueError(f"{name}: expected at least 2 {rows}, got {a.shape[0]}")
        if not np.isfinite(a).all():
            raise ValueError(f"{name}: expected finite values, got NaN or inf")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"{names[1]}: expected {x.shape[1]} features like {names[0]}, got {y.shape[1]}")
    return x, y


def _sq_dists(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise squared Euclidean distances via |a|² + |b|² − 2a·b, clipped at 0 (round-off)."""
    d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T)
    return np.maximum(d, 0.0)


def _rbf(a: np.ndarray, b: np.ndarray, bandwidth: float) -> np.ndarray:
    return np.exp(-_sq_dists(a, b) / (2.0 * bandwidth * bandwidth))


def _bandwidth(x: np.ndarray, y: np.ndarray, bandwidth: float | None) -> float:
    if bandwidth is None:
        return median_bandwidth(x, y)
    if isinstance(bandwidth, bool) or not isinstance(bandwidth, (int, float, np.integer, np.floating)) \
            or not np.isfinite(bandwidth) or bandwidth <= 0:
        raise ValueError(f"bandwidth: expected a positive number or None, got {bandwidth!r}")
    return float(bandwidth)


def _kernel_means(x: np.ndarray, y: np.ndarray, bw: float):
    """Return (within_x, within_y, cross, w) where w is the per-synthetic witness (see witness_values)."""
    m, n = len(x), len(y)
    kxx, kyy, kxy = _rbf(x, x, bw), _rbf(y, y, bw), _rbf(x, y, bw)
    # drop the i == j terms (k ≈ 1, up to the round-off of the |a|²+|b|²−2ab trick)
    row_xx = kxx.sum(1) - np.diag(kxx)
    within_x = row_xx.sum() / (m * (m - 1))
    within_y = (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
    cross = kxy.mean()
    w = kxy.mean(1) - row_xx / (m - 1)
    return within_x, within_y, cross, w


# ---------------------------------------------------------------- public metrics
def median_bandwidth(x, y) -> float:
    """σ for the RBF kernel: the median pairwise distance of the pooled sample ``x ∪ y``.

    Above 2,000 pooled rows an evenly spaced subset of 2,000 is used (deterministic, bounded
    memory). Zero distances (duplicate rows) are left out; if every distance is zero the sample
    is a single point and 1.0 is returned so the kernel stays defined.
    """
    x, y = _check_pair(x, y)
    z = np.concatenate([x, y])
    if len(z) > _MEDIAN_MAX_ROWS:
        z = z[np.linspace(0, len(z) - 1, _MEDIAN_MAX_ROWS).astype(int)]
    d2 = _sq_dists(z, z)[np.triu(np.ones((len(z), len(z)), bool), k=1)]
    d2 = d2[d2 > 1e-12 * (z * z).sum(1).max()]  # duplicates: 0 up to the round-off of the trick
    return float(np.median(np.sqrt(d2))) if d2.size else 1.0


def mmd2_unbiased(x, y, bandwidth: float | None = None) -> float:
    """Unbiased estimate of MMD²(P_x, P_y) with an RBF kernel; can be slightly negative near 0."""
    x, y = _check_pair(x, y)
    within_x, within_y, cross, _ = _kernel_means(x, y, _bandwidth(x, y, bandwidth))
    return float(within_x + within_y - 2.0 * cross)


def witness_values(x_syn, y_real, bandwidth: float | None = None) -> np.ndarray:
    """Empirical MMD witness at each synthetic row; HIGHER = looks more like the real set.

    ``w_i = mean_j k(x_i, y_j) − mean_{j≠i} k(x_i, x_j)``: similarity to the real set minus
    similarity to the rest of the synthetic set (the point itself is left out). A synthetic image
    with a high ``w_i`` sits where real mass exceeds synthetic mass, so making such images more
    likely lowers the MMD; it is meant as a per-sample reward.

    Identities (σ shared; ``cross``/``within_*`` as in the module docstring)::

        mean_i w_i = cross − within_x
        mmd2_unbiased(x, y) = −mean(witness_values(x, y)) − mean(witness_values(y, x))

    The second holds because the real-side values with the roles swapped average to
    ``cross − within_y``; their negation is the same witness function evaluated at the real points
    (leave-one-out), so MMD² = E_real[f] − E_syn[f] for f(z) = mean k(z, real) − mean k(z, syn).
    """
    x, y = _check_pair(x_syn, y_real, names=("x_syn", "y_real"))
    return _kernel_means(x, y, _bandwidth(x, y, bandwidth))[3]


def frechet_distance(x, y, eps: float = 1e-6) -> float:
    """|μx − μy|² + tr(Σx + Σy − 2(ΣxΣy)^½) between Gaussians fitted to the rows of x and y.

    With fewer rows than features the covariances are singular and ``sqrtm`` may return
    non-finite values or an imaginary part above 1e-3 of the real one; then ``eps·v·I`` (v the
    mean feature variance) is added to both covariances and the root retaken. The imaginary part
    left (round-off) is dropped, and the result is clipped at 0.
    """
    x, y = _check_pair(x, y)
    mu_x, mu_y = x.mean(0), y.mean(0)
    cov_x, cov_y = np.atleast_2d(np.cov(x, rowvar=False)), np.atleast_2d(np.cov(y, rowvar=False))

    def root(a, b):
        with warnings.catch_warnings():  # singular input is handled below, not worth a warning
            warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
            r = scipy.linalg.sqrtm(a @ b)
        ok = np.isfinite(r).all()
        if ok and np.iscomplexobj(r):
            ok = np.abs(r.imag).max() <= 1e-3 * np.abs(r.real).max()  # relative: features are small
        return r, ok

    covmean, ok = root(cov_x, cov_y)
    if not ok:
        scale = max(np.trace(cov_x), np.trace(cov_y)) / len(cov_x)  # eps relative to the feature variance
        offset = eps * (scale if scale > 0 else 1.0) * np.eye(len(cov_x))
        covmean, _ = root(cov_x + offset, cov_y + offset)
        if not np.isfinite(covmean).all():
            raise ValueError("frechet_distance: expected finite covariances, got a non-finite matrix square root")
    covmean = np.real(covmean)
    diff = mu_x - mu_y
    value = diff @ diff + np.trace(cov_x) + np.trace(cov_y) - 2.0 * np.trace(covmean)
    return float(max(value, 0.0))


# ---------------------------------------------------------------- on images
def _subsample(images, max_images: int | None):
    """At most ``max_images`` evenly spaced images (deterministic; no RNG)."""
    if max_images is None or len(images) <= max_images:
        return images
    idx = np.linspace(0, len(images) - 1, max_images).astype(int)
    return images[idx] if isinstance(images, np.ndarray) else [images[i] for i in idx]


def gap_with_witness(synthetic_images, real_images, *, seed: int = 0, value_max: float = 255,
                     max_images: int | None = None) -> tuple[dict, np.ndarray]:
    """``gap_metrics`` plus the witness value of each (kept) synthetic image, in input order."""
    if max_images is not None and (isinstance(max_images, bool) or not isinstance(max_images, (int, np.integer))
                                   or max_images < 2):
        raise ValueError(f"max_images: expected an int ≥ 2 or None, got {max_images!r}")
    features = RandomConvFeatures(seed)
    fx = features(_subsample(synthetic_images, max_images), value_max=value_max)
    fy = features(_subsample(real_images, max_images), value_max=value_max)
    return gap_from_features(fx, fy)


def gap_from_features(fx, fy) -> tuple[dict, np.ndarray]:
    """``gap_with_witness`` on features already extracted (a caller comparing many synthetic
    sets against one real set extracts the real features once)."""
    fx, fy = _check_pair(fx, fy, names=("synthetic_images", "real_images"), rows="images")
    bw = median_bandwidth(fx, fy)
    within_x, within_y, cross, w = _kernel_means(fx, fy, bw)
    metrics = {
        "mmd2": float(within_x + within_y - 2.0 * cross),
        "frechet": frechet_distance(fx, fy),
        "bandwidth": bw,
        "n_synthetic": len(fx),
        "n_real": len(fy),
    }
    return metrics, w


def gap_metrics(synthetic_images, real_images, *, seed: int = 0, value_max: float = 255,
                max_images: int | None = None) -> dict:
    """Gap between two image sets in ``RandomConvFeatures(seed)`` space.

    Returns ``{"mmd2", "frechet", "bandwidth", "n_synthetic", "n_real"}`` (lower = closer, for
    the two distances). Images are uint8 arrays or lists of same-size arrays, as
    ``RandomConvFeatures`` takes them; the two sets may differ in size and in grey/RGB.
    ``max_images`` caps each set with an evenly spaced subset.
    """
    return gap_with_witness(synthetic_images, real_images, seed=seed, value_max=value_max,
                            max_images=max_images)[0]
