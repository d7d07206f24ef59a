"""Hardware targets: a sourced device catalogue, per-device estimates, and a recommender.

- devices.yaml / cores.yaml / ops.yaml: data about the world, every figure with its source;
  calibration.yaml: MCU constants written by benchmarks/calibrate_mcu.py from MLPerf Tiny results.
- catalogue: load_devices(devices_file) -> {name: Device}, get_device(name, devices), host_device().
- estimator: estimate(profile, device, battery_mah=, inferences_per_hour=) -> Estimate.
- recommend: load_run_variants(run_dir), load_targets(path), recommend(variants, devices, ...).
Import the submodules directly; this package imports nothing so the CLI stays fast.
"""
