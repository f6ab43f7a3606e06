"""Where the node's start-up time goes, without ROS: imports, configuration, pipeline,
and each compiled program's trace / lower / compile-or-cache-load during the warm-up.

Runs what the node's *configure* runs (``config.load_pipeline_config`` on a params
file, ``SlamPipeline``, ``warm_up``; with loop closure it then waits for the global
graph's background compile) and prints one JSON object: the stages' seconds since
the interpreter started, and per jitted program (JAX's function name) the number
of programs and the seconds spent tracing (Python -> jaxpr), lowering (jaxpr ->
MLIR) and compiling or loading from the persistent cache (XLA), from JAX's own
monitoring events.  ``--cache DIR`` turns the persistent compile cache on (run it
twice for cold, then warm); without it the cache is off.  Marks are also given in CPU
seconds of the process (``marks_cpu_s``), which a loaded machine inflates less than wall
time.  Runs against older versions of the package too (``warm_up`` without ``graph``).

    .venv/bin/python bench/startup_profile.py [--params-file config/planar_laser.yaml] [--cache DIR]
"""

from __future__ import annotations

import time

T0 = time.perf_counter()
C0 = time.process_time()

import argparse  # noqa: E402
import inspect  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
from collections import defaultdict  # noqa: E402
from pathlib import Path  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
STAGES = {"/jax/core/compile/jaxpr_trace_duration": "trace",
          "/jax/core/compile/jaxpr_to_mlir_module_duration": "lower",
          "/jax/core/compile/backend_compile_duration": "compile"}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params-file", type=Path, default=REPO / "config" / "params.yaml")
    parser.add_argument("--cache", default="", help="persistent compile cache directory (default: off)")
    parser.add_argument("--defer", "--no-graph", action="store_true", dest="defer",
                        help="do not compile what a node compiles once active (the window's prefix solve, the global "
                             "graph's solve): what a node does before it is active")
    parser.add_argument("--timeline", action="store_true", help="list every trace/lower/compile event")
    parser.add_argument("--top", type=int, default=15, help="programs listed (slowest first)")
    args = parser.parse_args(argv)
    marks = {"interpreter": round(T0, 3)}
    cpu = {}  # the same marks in CPU seconds of the process (all threads): less sensitive to a loaded machine
    import jax
    from jax import monitoring

    marks["import_jax"] = time.perf_counter() - T0
    cpu["import_jax"] = time.process_time() - C0
    programs: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    hits = []
    timeline = []  # (end s since start, thread, stage, program, seconds)

    def on_duration(event, seconds, **kw):
        if event in STAGES:
            # the thread tells the window's solve (main) from the global graph's (its warm-up thread)
            thread = threading.current_thread().name
            name = f"{kw.get('fun_name', '?')}@{'main' if thread == 'MainThread' else thread}"
            programs[name][STAGES[event]] += seconds
            timeline.append((round(time.perf_counter() - T0, 2), name, STAGES[event], round(seconds, 3)))
            if STAGES[event] == "compile":
                programs[name]["programs"] += 1
        elif event == "/jax/compilation_cache/cache_retrieval_time_sec":
            hits.append(seconds)

    monitoring.register_event_duration_secs_listener(on_duration)
    from dsg_jit_ros.config import load_pipeline_config
    from dsg_jit_ros.mapping.pipeline import SlamPipeline
    from dsg_jit_ros.optimization.compile_cache import enable_persistent_cache
    from dsg_jit_ros.optimization.compile_count import compile_count

    marks["import_package"] = time.perf_counter() - T0
    cpu["import_package"] = time.process_time() - C0
    if args.cache:
        enable_persistent_cache(args.cache)
    cfg = load_pipeline_config(args.params_file)
    marks["config"] = time.perf_counter() - T0
    cpu["config"] = time.process_time() - C0
    pipe = SlamPipeline(cfg, background_loops=True)
    marks["pipeline"] = time.perf_counter() - T0
    cpu["pipeline"] = time.process_time() - C0
    params = inspect.signature(SlamPipeline.warm_up).parameters
    if "defer" in params:
        pipe.warm_up(defer=args.defer)
    elif "graph" in params:  # a version with the global graph deferred alone
        pipe.warm_up(graph=not args.defer)
    else:  # a version that always starts the graph's compile at once
        pipe.warm_up()
    marks["warm_up_returned"] = time.perf_counter() - T0
    cpu["warm_up_returned"] = time.process_time() - C0
    if pipe.graph_ready is not None and not args.defer:
        pipe.graph_ready.wait()
        marks["graph_ready"] = time.perf_counter() - T0
        cpu["graph_ready"] = time.process_time() - C0
    pipe.close()
    total = defaultdict(float)
    for p in programs.values():
        for k, v in p.items():
            total[k] += v
    top = sorted(programs.items(), key=lambda kv: -sum(v for k, v in kv[1].items() if k != "programs"))
    print(json.dumps({
        "params_file": str(args.params_file), "cache": bool(args.cache), "jax": jax.__version__,
        "marks_s": {k: round(v, 2) for k, v in marks.items() if k != "interpreter"},
        "marks_cpu_s": {k: round(v, 2) for k, v in cpu.items()},
        "programs": int(total["programs"]), "counted_entries": compile_count(), "cache_hits": len(hits),
        "seconds": {k: round(v, 2) for k, v in total.items() if k != "programs"},
        "timeline": timeline if args.timeline else None,
        "slowest": [{"name": n, **{k: round(v, 3) for k, v in p.items()}} for n, p in top[:args.top]],
    }, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
