// The book's model in Stan: RBF kernel, y ~ N(0, K + (noise^2 + 1e-6) I),
// LogNormal hyperpriors. Every term is written with `target +=` so that Stan keeps
// the normalising constants and its log density equals the JAX models' exactly.
data {
  int<lower=1> N;
  array[N] real x;
  vector[N] y;
}
parameters {
  real<lower=0> lengthscale;
  real<lower=0> amplitude;
  real<lower=0> noise;
}
model {
  matrix[N, N] K = add_diag(gp_exp_quad_cov(x, amplitude, lengthscale),
                            square(noise) + 1e-6);
  matrix[N, N] L = cholesky_decompose(K);
  target += lognormal_lpdf(lengthscale | 0, 1);
  target += lognormal_lpdf(amplitude | 0, 1);
  target += lognormal_lpdf(noise | -2, 1);
  target += multi_normal_cholesky_lpdf(y | rep_vector(0, N), L);
}
