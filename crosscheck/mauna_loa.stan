// The Mauna Loa chapter's model (notebooks/07_mauna_loa.ipynb), written from the page's
// equations: with r = t - t',
//   k(t, t') = a1^2 exp(-r^2 / (2 l1^2))                                   trend
//            + a2^2 exp(-2 sin^2(pi r / p) / l2^2) exp(-r^2 / (2 l3^2))    seasonal cycle
//            + a3^2 (1 + r^2 / (2 a l4^2))^(-a)                           medium term
// y ~ N(0, K + (sigma_n^2 + 1e-6) I), the period p fixed at one year, and a log-normal
// prior on each of the nine hyperparameters, given by its median (in years, or in ppm
// converted to the units of y with `ppm`) and the sd of its log (the "spread").
// Every term is a `target +=`, so the normalising constants are kept.
data {
  int<lower=1> N;
  vector[N] t;              // mid-month times, years
  vector[N] y;              // (c - mean) / sd of the training months
  real<lower=0> ppm;        // one ppm in the units of y (1 / sd)
  real<lower=0> period;     // years
}
transformed data {
  real jitter = 1e-6;
  matrix[N, N] r2;          // squared time differences
  matrix[N, N] sin2;        // sin^2(pi r / p)
  for (i in 1:N) {
    for (j in 1:N) {
      r2[i, j] = square(t[i] - t[j]);
      sin2[i, j] = square(sin(pi() * (t[i] - t[j]) / period));
    }
  }
}
parameters {
  real<lower=0> trend_lengthscale;      // l1
  real<lower=0> trend_amplitude;        // a1
  real<lower=0> seasonal_lengthscale;   // l2
  real<lower=0> seasonal_amplitude;     // a2
  real<lower=0> decay_lengthscale;      // l3
  real<lower=0> medium_lengthscale;     // l4
  real<lower=0> medium_alpha;           // a
  real<lower=0> medium_amplitude;       // a3
  real<lower=0> noise;                  // sigma_n
}
model {
  matrix[N, N] trend = square(trend_amplitude)
                       * exp(-r2 / (2 * square(trend_lengthscale)));
  matrix[N, N] seasonal = square(seasonal_amplitude)
                          * exp(-2 * sin2 / square(seasonal_lengthscale)
                                - r2 / (2 * square(decay_lengthscale)));
  matrix[N, N] medium = square(medium_amplitude)
                        * pow(1 + r2 / (2 * medium_alpha * square(medium_lengthscale)),
                              -medium_alpha);
  matrix[N, N] C = add_diag(trend + seasonal + medium, square(noise) + jitter);

  target += lognormal_lpdf(trend_lengthscale | log(30), 0.5);
  target += lognormal_lpdf(trend_amplitude | log(20 * ppm), 1);
  target += lognormal_lpdf(seasonal_lengthscale | log(1), 0.5);
  target += lognormal_lpdf(seasonal_amplitude | log(2 * ppm), 0.5);
  target += lognormal_lpdf(decay_lengthscale | log(50), 0.5);
  target += lognormal_lpdf(medium_lengthscale | log(1), 0.5);
  target += lognormal_lpdf(medium_alpha | log(1), 0.5);
  target += lognormal_lpdf(medium_amplitude | log(0.5 * ppm), 0.5);
  target += lognormal_lpdf(noise | log(0.2 * ppm), 0.5);
  target += multi_normal_cholesky_lpdf(y | rep_vector(0, N), cholesky_decompose(C));
}
