"""Per-method tuning on held-out data (``harness tune``): Optuna studies whose trials run through the
grid, the choice files ``run --tuned`` reads, and the tuning plots."""
