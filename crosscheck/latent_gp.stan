// The latent-GP chapter's model (notebooks/08_latent_gp.ipynb), written from the page's
// equations: yearly counts y_i ~ Poisson(exp f(t_i)), f ~ GP(mu, k) with
//   k(t, t') = alpha^2 exp(-(t - t')^2 / (2 l^2)),
// sampled in the whitened form u ~ N(0, I), f = mu + L u, L L' = K + 1e-6 I, with
// l ~ LogNormal(log 20, 0.5) (years), alpha ~ LogNormal(0, 0.5), mu ~ Normal(0, 1).
// Every term is a `target +=`, so the normalising constants (the -log y! of the Poisson
// among them) are kept.
data {
  int<lower=1> N;
  array[N] real t;               // years
  array[N] int<lower=0> y;       // counts
}
parameters {
  real<lower=0> lengthscale;
  real<lower=0> amplitude;
  real mu;
  vector[N] u;
}
transformed parameters {
  vector[N] f;
  {
    matrix[N, N] L = cholesky_decompose(
        add_diag(gp_exp_quad_cov(t, amplitude, lengthscale), 1e-6));
    f = mu + L * u;
  }
}
model {
  target += lognormal_lpdf(lengthscale | log(20), 0.5);
  target += lognormal_lpdf(amplitude | 0, 0.5);
  target += normal_lpdf(mu | 0, 1);
  target += std_normal_lpdf(u);
  target += poisson_log_lpmf(y | f);
}
