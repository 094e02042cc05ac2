"""Perceptual and adversarial losses (jsr.losses) against numpy written from their definitions.

The references follow the papers and BasicSR's GANLoss / PerceptualLoss / ESRGANModel: BCE
-log(sigmoid(x)), least squares to 1/0, hinge, WGAN, the relativistic average GAN of ESRGAN
(D(x) - E[D(y)], the other side's mean a constant), Gram matrices F^T F / (C H W).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jsr import losses

RNG = np.random.default_rng(0)
REAL = RNG.normal(0.5, 1.5, (6, 1)).astype(np.float32)
FAKE = RNG.normal(-0.3, 1.2, (6, 1)).astype(np.float32)


def _log_sigmoid(x):
  x = np.asarray(x, np.float64)
  return -np.log1p(np.exp(-x))


def _bce(x, target_real):
  """Binary cross-entropy of sigmoid(x) against 1 (real) or 0 (fake), mean."""
  return float(np.mean(-_log_sigmoid(x) if target_real else -_log_sigmoid(-x)))


NP_D = {
    "vanilla": lambda r, f: _bce(r, True) + _bce(f, False),
    "lsgan": lambda r, f: np.mean((r - 1.0) ** 2) + np.mean(f ** 2),
    "hinge": lambda r, f: np.mean(np.maximum(0, 1 - r)) + np.mean(np.maximum(0, 1 + f)),
    "wgan": lambda r, f: -np.mean(r) + np.mean(f),
}
NP_G = {
    "vanilla": lambda f: _bce(f, True),
    "lsgan": lambda f: np.mean((f - 1.0) ** 2),
    "hinge": lambda f: -np.mean(f),
    "wgan": lambda f: -np.mean(f),
}


@pytest.mark.parametrize("kind", losses.GAN_KINDS)
def test_standard_gan_losses_match_their_definitions(kind):
  d = losses.discriminator_loss(kind, jnp.asarray(REAL), jnp.asarray(FAKE))
  g = losses.generator_loss(kind, jnp.asarray(REAL), jnp.asarray(FAKE))
  np.testing.assert_allclose(float(d), NP_D[kind](REAL, FAKE), rtol=1e-5)
  np.testing.assert_allclose(float(g), NP_G[kind](FAKE), rtol=1e-5)


def test_relativistic_average_gan_matches_esrgan():
  # ESRGAN eq. (1)-(2): D_Ra(a, b) = sigmoid(C(a) - E[C(b)]).
  r_rel, f_rel = REAL - FAKE.mean(), FAKE - REAL.mean()
  want_d = 0.5 * (_bce(r_rel, True) + _bce(f_rel, False))
  want_g = 0.5 * (_bce(r_rel, False) + _bce(f_rel, True))
  d = losses.discriminator_loss("vanilla", jnp.asarray(REAL), jnp.asarray(FAKE), True)
  g = losses.generator_loss("vanilla", jnp.asarray(REAL), jnp.asarray(FAKE), True)
  np.testing.assert_allclose(float(d), want_d, rtol=1e-5)
  np.testing.assert_allclose(float(g), want_g, rtol=1e-5)


def test_relativistic_gradients_treat_the_other_mean_as_constant():
  """BasicSR detaches the other side's logits: dL_D/dreal_i involves only real_i's own term."""
  real, fake = jnp.asarray(REAL), jnp.asarray(FAKE)
  g_real = jax.grad(lambda r: losses.discriminator_loss("vanilla", r, fake, True))(real)
  # d/dr_i of 0.5 * mean(-log sigmoid(r - m_f)) = -0.5 * (1 - sigmoid(r_i - m_f)) / n.
  sig = 1 / (1 + np.exp(-(REAL - FAKE.mean())))
  np.testing.assert_allclose(np.asarray(g_real), -0.5 * (1 - sig) / REAL.size, rtol=1e-5)
  # G's loss sees D(real) as data: no gradient into the real logits.
  g_of_real = jax.grad(lambda r: losses.generator_loss("vanilla", r, fake, True))(real)
  assert not np.any(np.asarray(g_of_real))


def _feats(seed, shape=(2, 5, 4, 3)):
  r = np.random.default_rng(seed)
  return {"a": r.normal(size=shape).astype(np.float32),
          "b": r.normal(size=(2, 3, 2, 6)).astype(np.float32)}


@pytest.mark.parametrize("criterion", losses.FEATURE_CRITERIA)
def test_perceptual_is_the_weighted_sum_of_layer_criteria(criterion):
  x, y = _feats(1), _feats(2)
  weights = {"a": 0.5, "b": 2.0}
  crit = {"l1": lambda d: np.mean(np.abs(d)), "l2": lambda d: np.mean(d ** 2),
          "fro": lambda d: np.sqrt(np.sum(d ** 2))}[criterion]
  want = sum(w * crit(x[k].astype(np.float64) - y[k]) for k, w in weights.items())
  got = losses.perceptual(x, y, weights, criterion)
  np.testing.assert_allclose(float(got), want, rtol=1e-5)


def test_style_term_compares_gram_matrices():
  x, y = _feats(3), _feats(4)

  def gram(f):  # (N, H, W, C): G_cd = sum_p F_pc F_pd / (C H W)
    n, h, w, c = f.shape
    m = f.reshape(n, h * w, c).astype(np.float64)
    return np.stack([mi.T @ mi for mi in m]) / (c * h * w)

  want = np.mean(np.abs(gram(x["a"]) - gram(y["a"])))
  got = losses.perceptual(x, y, {"a": 1.0}, "l1", style=True)
  np.testing.assert_allclose(float(got), want, rtol=1e-5)


def test_no_gradient_flows_into_the_target_features():
  x, y = _feats(5), _feats(6)
  grad_y = jax.grad(lambda t: losses.perceptual(x, t, {"a": 1.0, "b": 1.0}, "l2"))(y)
  assert not any(np.any(np.asarray(v)) for v in grad_y.values())


def test_unknown_kinds_are_named():
  with pytest.raises(ValueError, match="'bce'"):
    losses.discriminator_loss("bce", jnp.asarray(REAL), jnp.asarray(FAKE))
  with pytest.raises(ValueError, match="'l3'"):
    losses.perceptual(_feats(1), _feats(2), {"a": 1.0}, "l3")
