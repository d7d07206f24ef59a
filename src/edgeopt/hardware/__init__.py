"""Hardware targets: a sourced device catalogue, per-device estimates, and a recommender.

- devices.yaml / cores.yaml / engines.yaml / ops.yaml: data about the world, every figure with its
  source; mlperf_systems.yaml: board and inference engine of each MLPerf Tiny system;
  calibration.yaml: per-engine, per-op-class MCU cycle rates with their intervals and the rows they
  were fitted from, written by benchmarks/calibrate_mcu.py.
- catalogue: load_devices(devices_file) -> {name: Device}, get_device(name, devices), host_device().
- estimator: estimate(profile, device, engine=, battery_mah=, inferences_per_hour=) -> Estimate
  (latency_ms + latency_range_ms, energy_mj + energy_range_mj, basis, memory_traffic, power, ...);
  register_latency_provider(runtime, fn) routes devices with that runtime (e.g. a compiler) elsewhere;
  the built-in one is vela.vela_latency (Ethos-U devices: vela's figures, both optimise modes in
  Estimate.compiler); edgetpu.edgetpu_readiness fills Estimate.edgetpu for Edge TPU devices.
- recommend: load_run_variants(run_dir), load_targets(path), recommend(variants, devices, ...).
Import the submodules directly; this package imports nothing so the CLI stays fast.
"""
