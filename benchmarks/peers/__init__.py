"""Other model servers run side by side with ours in the benchmarks, each serving the same model."""
