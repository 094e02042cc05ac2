"""The self-supervised method: network shapes, the loss at and away from a consistent solution."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import selfsup as selfsup_config
from jsr.methods import selfsup
from jsr.models import selfsup_net
from jsr.ops import degrade
from jsr.ops.resize import imresize

jax.config.update("jax_disable_most_optimizations", True)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_network_shapes_and_starts_as_bicubic(scale):
  model = selfsup_net.Model(variant="tiny", scale=scale)
  lr = jax.random.uniform(jax.random.PRNGKey(0), (2, 7, 9, 3))
  params = model.init(jax.random.PRNGKey(1), lr)
  sr = model.apply(params, lr)
  chex.assert_shape(sr, (2, 7 * scale, 9 * scale, 3))
  chex.assert_type(sr, jnp.float32)
  # The zero-initialised tail makes the untrained network exactly MATLAB bicubic.
  np.testing.assert_allclose(sr, imresize(lr, scale), atol=1e-6)


def test_skip_kernel_sets_the_starting_interpolation():
  lr = jax.random.uniform(jax.random.PRNGKey(0), (1, 8, 8, 3))
  out = {}
  for skip in ("lanczos3", "none"):
    model = selfsup_net.Model(variant="tiny", scale=2, skip=skip)
    out[skip] = model.apply(model.init(jax.random.PRNGKey(1), lr), lr)
  np.testing.assert_allclose(out["lanczos3"], imresize(lr, 2, kernel="lanczos3"), atol=1e-6)
  assert float(jnp.abs(out["lanczos3"] - imresize(lr, 2)).max()) > 1e-3  # not bicubic
  np.testing.assert_array_equal(out["none"], 0.0)  # zero tail, no skip
  with pytest.raises(ValueError, match="unknown kernel 'lanczos9'"):
    model = selfsup_net.Model(variant="tiny", scale=2, skip="lanczos9")
    model.init(jax.random.PRNGKey(1), lr)


def test_adjoint_tail_moves_the_output_only_in_the_row_space_of_d():
  """tail='adjoint': output - skip = D^T c, so it is orthogonal to D's null space. Reference: the
  projector onto that null space, I - D^T (D D^T)^-1 D, from MATLAB's per-axis bicubic matrices."""
  from jsr.ops.resize import resize_matrix
  s, h, w = 2, 6, 7
  config = selfsup_config.get_config("scale=2,variant=tiny,loss=consistency")
  config.model.skip, config.model.tail = "cubic", "adjoint"
  model = selfsup.create_model(config)
  lr = jax.random.uniform(jax.random.PRNGKey(0), (1, h, w, 3))
  params = model.init(jax.random.PRNGKey(1), lr)
  np.testing.assert_allclose(model.apply(params, lr), imresize(lr, s), atol=1e-6)  # zero tail
  params = jax.tree.map(lambda p: p + 0.1 * jax.random.normal(jax.random.PRNGKey(2), p.shape),
                        params)
  residual = np.asarray(model.apply(params, lr) - imresize(lr, s), np.float64)[0]
  d = np.kron(resize_matrix(h * s, h, 1 / s), resize_matrix(w * s, w, 1 / s)).astype(np.float64)
  null = np.eye(d.shape[1]) - d.T @ np.linalg.solve(d @ d.T, d)
  flat = residual.reshape(-1, 3)  # (H*W, C), row-major like the Kronecker product
  assert np.abs(flat).max() > 1e-3  # a real residual
  np.testing.assert_allclose(null @ flat, 0.0, atol=1e-5 * np.abs(flat).max())


def test_parameter_count_matches_architecture_formula():
  f, b, s = 32, 4, 2
  conv = lambda cin, cout: 9 * cin * cout + cout
  expected = conv(3, f) + b * 2 * conv(f, f) + conv(f, f) + conv(f, 3 * s * s)
  params = jax.eval_shape(selfsup_net.Model(variant="small", scale=s).init,
                          jax.random.PRNGKey(0), jnp.zeros((1, 8, 8, 3)))
  assert sum(np.prod(p.shape) for p in jax.tree.leaves(params)) == expected


def _config(scale, loss="both", kernel="bicubic"):
  c = selfsup_config.get_config(f"scale={scale},loss={loss},runlocal")
  c.degradation.kernel = kernel
  c.loss.gamma = 0.0
  return c


@pytest.mark.parametrize("kernel", ["bicubic", "gaussian"])
def test_consistency_loss_zero_at_consistent_solution_positive_away(kernel):
  scale = 2
  config = _config(scale, "consistency", kernel)
  degrade_fn = selfsup.make_degradation(config)
  rng = np.random.default_rng(0)
  hr = jnp.asarray(rng.random((2, 48, 48, 3)), jnp.float32)
  lr = degrade_fn(hr)
  # A "network" that returns the true HR is a consistent solution: D(f(y)) == y.
  exact = lambda params, x: hr
  total, terms = selfsup.loss_terms(None, exact, lr, config, degrade_fn)
  assert float(terms["l2"]) < 1e-12 and abs(float(terms["dssim"])) < 1e-5
  assert float(total) < 1e-5
  off = lambda params, x: hr + 0.05 * jnp.asarray(rng.standard_normal(hr.shape), jnp.float32)
  total_off, terms_off = selfsup.loss_terms(None, off, lr, config, degrade_fn)
  assert float(terms_off["l2"]) > 1e-5 and float(total_off) > 100 * float(total) + 1e-4
  # Independent check of the degradation used for the Gaussian case: blur then keep every 2nd.
  if kernel == "gaussian":
    k = degrade.gaussian_kernel(config.degradation.kernel_size, config.degradation.sigma)
    np.testing.assert_allclose(lr, degrade.blur(hr, k)[:, ::2, ::2], atol=1e-6)


def test_pair_term_zero_when_network_inverts_the_degradation():
  config = _config(2, "pair")
  degrade_fn = selfsup.make_degradation(config)
  lr = jnp.asarray(np.random.default_rng(1).random((2, 24, 24, 3)), jnp.float32)
  _, terms = selfsup.loss_terms(None, lambda p, x: lr, lr, config, degrade_fn)
  assert float(terms["pair_l2"]) == 0.0 and "l2" not in terms
  _, terms = selfsup.loss_terms(None, lambda p, x: imresize(x, 2), lr, config, degrade_fn)
  assert float(terms["pair_l2"]) > 1e-4  # bicubic does not undo bicubic downscaling


def test_train_step_lowers_the_loss_and_never_sees_hr():
  config = _config(2)
  config.optim.lr = 3e-3
  batch = {"image": np.asarray(np.random.default_rng(2).integers(0, 256, (4, 24, 24, 3)),
                               np.uint8)}
  state = selfsup.init(config, jax.random.PRNGKey(0), batch)
  step = jax.jit(functools.partial(selfsup.train_step, config=config))
  losses = []
  for _ in range(8):
    state, m = step(state, batch, None)
    losses.append(float(m["loss"]))
  assert all(np.isfinite(losses)) and losses[-1] < losses[0]
  sr = selfsup.predict({"params": state.params}, jnp.zeros((1, 10, 12, 3)), config)
  chex.assert_shape(sr, (1, 20, 24, 3))


def test_bad_patch_size_is_reported():
  config = _config(3)
  config.data.patch_size = 25
  with pytest.raises(ValueError, match="multiple of config.scale"):
    selfsup.init(config, jax.random.PRNGKey(0), {"image": np.zeros((2, 25, 25, 3), np.uint8)})


def test_total_loss_is_the_weighted_sum_of_the_terms_as_defined():
  """L = a*L2 + b*(1 - SSIM) + g*TV + d*pair, each term in numpy from its definition on the real
  network's outputs; distinct non-unit weights, so a term weighted or defined wrongly fails."""
  from tests import np_reference
  config = selfsup_config.get_config("scale=2,loss=both,runlocal")
  config.loss.alpha, config.loss.beta, config.loss.gamma, config.loss.delta = 0.7, 0.3, 0.05, 1.3
  m = config.loss.margin
  assert m > 0  # the margin crop is part of what is checked
  degrade_fn = selfsup.make_degradation(config)
  model = selfsup.create_model(config)
  yy, xx = np.mgrid[0:24, 0:24]
  smooth = np.stack([0.5 + 0.3 * np.sin(xx / 3.0 + c) * np.cos(yy / 4.0 - c) for c in range(3)], -1)
  noise = 0.1 * np.random.default_rng(3).standard_normal((2, 24, 24, 3))
  lr = jnp.asarray(np.clip(smooth + noise, 0, 1), jnp.float32)
  params = model.init(jax.random.PRNGKey(0), lr)["params"]
  # Away from the zero-initialised tail (which makes f bicubic), so every term is well above 0.
  leaves, treedef = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.PRNGKey(1), len(leaves))
  params = jax.tree.unflatten(treedef, [p + 0.05 * jax.random.normal(k, p.shape)
                                        for p, k in zip(leaves, keys)])
  apply_fn = model.apply

  total, terms = selfsup.loss_terms(params, apply_fn, lr, config, degrade_fn)

  f = lambda x: np.asarray(apply_fn({"params": params}, x), np.float64)
  y = np.asarray(lr, np.float64)
  hr_pred = f(lr)
  y_pred = np.asarray(degrade_fn(jnp.asarray(hr_pred, jnp.float32)), np.float64)
  crop = lambda a: a[:, m:-m, m:-m, :]
  l2 = np.mean((crop(y_pred) - crop(y)) ** 2)
  # SSIM (Wang et al.; 11x11 Gaussian, sigma 1.5, valid, peak 1) per image and channel, averaged.
  ssim = np.mean([np_reference.ssim(crop(y_pred)[n, ..., c], crop(y)[n, ..., c], peak=1.0)
                  for n in range(2) for c in range(3)])
  dssim = 1.0 - ssim
  tv = (np.mean(np.abs(np.diff(hr_pred, axis=1))) + np.mean(np.abs(np.diff(hr_pred, axis=2))))
  pair = np.mean((f(degrade_fn(lr)) - y) ** 2)  # L2(f(D(y)), y)
  ref = 0.7 * l2 + 0.3 * dssim + 0.05 * tv + 1.3 * pair

  for name, value in (("l2", l2), ("dssim", dssim), ("tv", tv), ("pair_l2", pair)):
    np.testing.assert_allclose(float(terms[name]), value, rtol=1e-4, err_msg=name)
  np.testing.assert_allclose(float(total), ref, rtol=1e-5)
  # Each weighted term is a real share of the total (6% to 65% here): weighting any one x10 moves
  # the total by far more than the tolerance.
  shares = np.array([0.7 * l2, 0.3 * dssim, 0.05 * tv, 1.3 * pair]) / ref
  assert shares.min() > 0.03, shares
