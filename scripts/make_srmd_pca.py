r"""python scripts/make_srmd_pca.py --output=jsr/assets/srmd_pca.npz

The PCA basis SRMD (Zhang, Zuo, Zhang, CVPR 2018) projects its blur kernels on, computed by jsr
(jsr/assets/srmd_pca.npz, read by jsr.methods.srmd.load_pca).

Sampling as the authors' `TrainingCodes/kernels/Demo_Get_PCA_matrix.m` (cszn/SRMD) does:
10,000 15x15 anisotropic Gaussians `anisotropic_Gaussian(15, theta, l1, l2)` with
theta = pi U, l1 = 0.1 + 9.9 U, l2 = 0.1 + (l1 - 0.1) U (eigenvalues of the covariance, in
pixels^2; U uniform on [0, 1)), built by jsr.ops.kernels.kair_anisotropic_gaussian (KAIR's and the
MATLAB release's formula). KAIR's `utils_sisr.cal_pca_matrix` has the same sampler with l_max=12
and 500 samples; its SRMD test script loads the MATLAB release's matrix instead, so the MATLAB
settings are the ones followed here.

PCA as the reference computes it: no mean is subtracted; the basis is the 15 leading eigenvectors
of C = X X^T (X: 225 x 10,000 vectorised kernels), here the leading left singular vectors of X
(numpy SVD, float64), which are the same vectors. Kernels are vectorised column-major (MATLAB's
`kernel(:)`, numpy's order="F"), as in the reference, so a code is `basis @ k.flatten("F")`.
Differences from the MATLAB `P`: rows are ordered by decreasing singular value (MATLAB's `eig`
gives them increasing) and each row's sign is fixed so that its entries sum to >= 0 (eigenvectors
have no sign of their own); a network trained on one basis needs that same basis.

The file holds basis (15, 225) float32, singular_values (225,), and the generation settings:
num_samples, kernel_size, dim, theta_max, l_min, l_max, seed, order ("F").
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import jax
import numpy as np

from jsr.ops import kernels

DEFAULTS = dict(num_samples=10_000, kernel_size=15, dim=15, theta_max=math.pi, l_min=0.1,
                l_max=10.0, seed=0)


def sample_kernels(num_samples: int, kernel_size: int, theta_max: float, l_min: float,
                   l_max: float, seed: int) -> np.ndarray:
  """(num_samples, k, k) float64 kernels drawn as Demo_Get_PCA_matrix.m draws them."""
  rng = np.random.default_rng(seed)
  theta = theta_max * rng.random(num_samples)
  l1 = l_min + (l_max - l_min) * rng.random(num_samples)
  l2 = l_min + (l1 - l_min) * rng.random(num_samples)
  k = kernels.kair_anisotropic_gaussian(kernel_size, theta, l1, l2)
  return np.asarray(jax.device_get(k), np.float64)


def compute_basis(kernels_: np.ndarray, dim: int) -> tuple[np.ndarray, np.ndarray]:
  """(basis (dim, k*k), singular values) of the uncentred column-major kernel matrix."""
  n = kernels_.shape[0]
  x = kernels_.transpose(0, 2, 1).reshape(n, -1).T  # (k*k, n); column j is kernel j's k(:)
  u, s, _ = np.linalg.svd(x, full_matrices=False)
  basis = u[:, :dim].T
  basis *= np.where(basis.sum(axis=1, keepdims=True) < 0, -1.0, 1.0)
  return basis, s


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--output", default=str(Path(__file__).resolve().parents[1] / "jsr" /
                                              "assets" / "srmd_pca.npz"))
  for name, value in DEFAULTS.items():
    parser.add_argument(f"--{name}", type=type(value), default=value)
  args = parser.parse_args()
  settings = {name: getattr(args, name) for name in DEFAULTS}
  ks = sample_kernels(settings["num_samples"], settings["kernel_size"], settings["theta_max"],
                      settings["l_min"], settings["l_max"], settings["seed"])
  basis, s = compute_basis(ks, settings["dim"])
  energy = float((s[:settings["dim"]] ** 2).sum() / (s ** 2).sum())
  np.savez(args.output, basis=basis.astype(np.float32), singular_values=s, order="F",
           **settings)
  print(f"wrote {args.output}: basis {basis.shape}, energy kept {energy:.6f}")


if __name__ == "__main__":
  main()
