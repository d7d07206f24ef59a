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


def test_best_within_budget_never_names_a_variant_over_the_budget():
    from edgeopt.run import best_within_budget

    def v(name, delta, size, p50):
        return {"name": name, "status": "done", "vs_baseline": {"accuracy_delta_points": delta},
                "metrics": {"size_bytes": size, "latency_ms": {"p50_ms": p50}}}

    variants = [{"name": "float32", "status": "done", "metrics": {"size_bytes": 400, "latency_ms": {"p50_ms": 1.0}}},
                v("int8", -0.3, 100, 1.6), v("dynamic", -1.5, 90, 0.8), v("float16", 0.0, 200, 1.0)]
    best = best_within_budget(variants, 0.5)
    assert (best["smallest"], best["fastest"], best["budget_met"]) == ("int8", "float32", True)
    assert best_within_budget(variants, 2.0)["smallest"] == "dynamic"
    assert best_within_budget(variants, None)["smallest"] == "int8"  # default budget: 1 point
    tight = best_within_budget(variants[1:2] + variants[2:3], 0.1)  # issue 12: over budget is never "best"
    assert tight["budget_met"] is False and tight["smallest"] is None and tight["closest"] == "int8"
