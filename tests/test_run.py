from edgeopt.run import compare_to_baseline, pareto_front


def _v(name, acc, size, p50, status="done"):
    return {"name": name, "status": status,
            "metrics": {"accuracy": acc, "size_bytes": size, "latency_ms": {"p50_ms": p50}}}


def test_pareto_front_keeps_only_undominated():
    variants = [_v("float32", 0.90, 400, 1.0), _v("int8", 0.89, 100, 1.5), _v("float16", 0.90, 200, 1.0),
                _v("bad", 0.80, 300, 2.0), _v("broken", 0.99, 1, 0.1, status="failed")]
    assert pareto_front(variants) == ["int8", "float16"]


def test_compare_to_baseline_states_slower_plainly():
    base = {"accuracy": 0.9, "size_bytes": 400, "gzip_bytes": 300, "latency_ms": {"p50_ms": 1.0},
            "how": {"runtime": "litert"}}
    slow = {"accuracy": 0.895, "size_bytes": 100, "gzip_bytes": 60, "latency_ms": {"p50_ms": 1.5},
            "how": {"runtime": "litert"}}
    d = compare_to_baseline(slow, base, "classification")
    assert d["accuracy_delta_points"] == -0.5 and d["size_ratio"] == 4.0 and d["gzip_ratio"] == 5.0
    assert d["speed"] == "1.50x slower than float32 on litert"
    fast = dict(slow, latency_ms={"p50_ms": 0.5})
    assert compare_to_baseline(fast, base, "classification")["speed"] == "2.00x faster than float32 on litert"
