"""Per-keyframe latency of the online data path (``SlamPipeline``), no ROS.

A synthetic run is fed straight into ``SlamPipeline.add_odometry`` /
``add_cloud`` at the LiDAR rate: the courtyard, loop trajectory, 16-beam
LiDAR and drifting wheel odometry of ``dsg_jit_ros.tools.demo_world`` (a
simpler built-in world of walls and pillars when that module is missing).
For each window size it prints one JSON line with

- per-keyframe latency p50 / p95 / max (ms, wall, cloud in -> keyframe solved, as
  the node publishes it; the covariance for ~/odometry is computed afterwards, as
  in the node, and shows in the breakdown) and solve_ms
  p50 / p95 (the window's last LM solve of each keyframe);
- compiles after warm-up (``counted``: the package's jitted entries; ``backend``:
  any XLA compile in the process) — the target is 0;
- RSS (MiB) after warm-up and at the end;
- the real-time factor: simulated seconds / wall seconds spent inside the
  pipeline calls (every cloud and odometry message, keyframe or not);
- ATE (m, RMS position error after aligning the first pose) of the keyframe
  estimates and of odometry;
- where the time goes: exclusive ms per keyframe in solver / voxelise /
  association / graph edits / state pack-unpack / covariance / other, measured
  by wrapping the pipeline's functions (a few microseconds per wrapped call).

Sizing (printed in each record): voxel edge, range band, capacities.  With the
defaults (0.65 m voxels, 15 m range, a keyframe every 0.5 m) about 2000
voxels are active at window 20.

    .venv/bin/python bench/node_latency.py --windows 10 20 40
    .venv/bin/python bench/node_latency.py --windows 20 --long   # 300 keyframes

Timings are wall clock on a shared machine: compare runs made back to back.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import gc
import json
import os
import resource
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import dsg_jit_ros  # noqa: E402,F401  (float64)
from dsg_jit_ros.mapping import pipeline as pipeline_mod  # noqa: E402
from dsg_jit_ros.mapping import window as window_mod  # noqa: E402
from dsg_jit_ros.mapping.keyframes import KeyframeConfig  # noqa: E402
from dsg_jit_ros.mapping.pipeline import InputConfig, PipelineConfig, SlamPipeline  # noqa: E402
from dsg_jit_ros.mapping.voxelize import VoxelConfig  # noqa: E402
from dsg_jit_ros.mapping.window import WindowConfig  # noqa: E402
from dsg_jit_ros.world import model as model_mod  # noqa: E402


# ---------------------------------------------------------------- the run ---
class _Run:
    """Ground truth, odometry and a LiDAR scan function for a looping robot."""

    def __init__(self, seed: int, rate_hz: float):
        self.rng = np.random.default_rng(seed)
        self.dt = 1.0 / rate_hz
        try:
            from dsg_jit_ros.tools import demo_world as dw
        except ImportError:
            dw = None
        self.source = "demo_world" if dw is not None else "builtin"
        if dw is not None:
            self._dw = dw
            self.world = dw.default_world()
            self.traj = dw.LoopTrajectory()
            self.lidar = dw.LidarConfig()
            self.dirs = dw.lidar_directions(self.lidar)
        else:
            self.world_pts = _builtin_world()

    def truth(self, t: np.ndarray) -> np.ndarray:
        if self.source == "demo_world":
            return self.traj.poses(t)
        a = 2.0 * np.pi * np.asarray(t) / 60.0  # 9 m radius circle in 60 s (0.94 m/s)
        out = np.tile(np.eye(4), (len(a), 1, 1))
        c, s = np.cos(a + np.pi / 2), np.sin(a + np.pi / 2)
        out[:, 0, 0], out[:, 0, 1], out[:, 1, 0], out[:, 1, 1] = c, -s, s, c
        out[:, 0, 3], out[:, 1, 3], out[:, 2, 3] = 9 * np.cos(a), 9 * np.sin(a), 1.0
        return out

    def odometry(self, truth: np.ndarray) -> np.ndarray:
        if self.source == "demo_world":
            return self._dw.simulate_odometry(truth, self.dt, self._dw.OdometryNoise(), self.rng)[0]
        odom = [np.eye(4)]
        for a, b in zip(truth[:-1], truth[1:]):
            inc = np.linalg.inv(a) @ b
            inc[:3, 3] *= 1.02
            yaw = 0.01 * self.dt + self.rng.normal(0, 0.002)
            rz = np.array([[np.cos(yaw), -np.sin(yaw), 0], [np.sin(yaw), np.cos(yaw), 0], [0, 0, 1]])
            inc[:3, :3] = inc[:3, :3] @ rz
            odom.append(odom[-1] @ inc)
        return np.array(odom)

    def scan(self, t_world_body: np.ndarray) -> np.ndarray:
        if self.source == "demo_world":
            return self._dw.scan(self.world, t_world_body, self.lidar, self.rng, self.dirs)[0]
        body = (self.world_pts - t_world_body[:3, 3]) @ t_world_body[:3, :3]
        body = body[np.linalg.norm(body, axis=1) < 20.0]
        return (body + self.rng.normal(0, 0.02, body.shape)).astype(np.float32)


def _builtin_world() -> np.ndarray:
    """Points on the walls of a 30 x 24 m room, a floor patch and pillars (0.15 m spacing)."""
    pts = []
    z = np.arange(0.0, 3.0, 0.15)
    for s, fixed, axis in ((np.arange(-15, 15, 0.15), 12.0, 0), (np.arange(-12, 12, 0.15), 15.0, 1)):
        for sign in (-1, 1):
            a, zz = np.meshgrid(s, z)
            other = np.full_like(a, sign * fixed)
            xy = (a, other) if axis == 0 else (other, a)
            pts.append(np.c_[xy[0].ravel(), xy[1].ravel(), zz.ravel()])
    g = np.arange(-14, 14, 0.3)
    gx, gy = np.meshgrid(g, g)
    pts.append(np.c_[gx.ravel(), gy.ravel(), np.zeros(gx.size)])
    ang = np.linspace(0, 2 * np.pi, 24, endpoint=False)
    for cx, cy in [(-4, -3), (3, 4), (0, -5), (6, -1), (-6, 5)]:
        a, zz = np.meshgrid(ang, z)
        pts.append(np.c_[cx + 0.4 * np.cos(a).ravel(), cy + 0.4 * np.sin(a).ravel(), zz.ravel()])
    return np.concatenate(pts)


# ------------------------------------------------------- time breakdown ---
class Profiler:
    """Exclusive wall time per phase of functions wrapped in place (stack-based:
    a wrapped call inside another is charged to its own phase only)."""

    def __init__(self):
        self.ms = defaultdict(float)
        self.calls = defaultdict(int)
        self._stack: list[list] = []  # [phase, child time]
        self._undo: list[tuple] = []
        self.enabled = False

    def wrap(self, owner, name: str, phase: str, block: bool = False, prop: bool = False) -> None:
        if not hasattr(owner, name):
            return
        orig = owner.__dict__[name] if isinstance(owner, type) else getattr(owner, name)
        fn = orig.fget if prop else orig
        prof = self

        @functools.wraps(fn)
        def timed(*args, **kwargs):
            if not prof.enabled:
                return fn(*args, **kwargs)
            prof._stack.append([phase, 0.0])
            start = time.perf_counter()
            try:
                out = fn(*args, **kwargs)
                if block:
                    jax.block_until_ready(out)
                return out
            finally:
                total = time.perf_counter() - start
                _, child = prof._stack.pop()
                prof.ms[phase] += 1e3 * (total - child)
                prof.calls[phase] += 1
                if prof._stack:
                    prof._stack[-1][1] += total

        setattr(owner, name, property(timed) if prop else timed)
        self._undo.append((owner, name, orig))

    def reset(self) -> None:
        self.ms.clear()
        self.calls.clear()


def install_profiler() -> Profiler:
    """Wrap the data path's functions that exist in this version of the code."""
    prof = Profiler()
    SW, WM, SP = window_mod.SlidingWindow, model_mod.WorldModel, pipeline_mod.SlamPipeline
    prof.wrap(SP, "add_cloud", "other")  # the root: input checks, interpolation, selection
    prof.wrap(SP, "process_ready", "other")  # the root in versions with a cloud queue
    prof.wrap(SW, "add_keyframe", "window_other")  # the window's own bookkeeping
    prof.wrap(SP, "_newest_covariance", "covariance")
    prof.wrap(window_mod, "voxelize", "voxelise")
    prof.wrap(SW, "_observe", "association")
    for name in ("_activate_voxel", "_activate_voxels"):
        prof.wrap(SW, name, "association")
    prof.wrap(SW, "_register", "registration")
    for name in ("_drop_oldest", "_forget_observations", "_retire_voxel", "_retire_voxels", "_release_keys"):
        prof.wrap(SW, name, "graph_edits")
    for name in ("add_factor", "add_factors", "remove_factor", "remove_factors", "add_variable", "add_variables",
                 "remove_variable", "remove_variables", "set_variable_value"):
        prof.wrap(WM, name, "graph_edits")
    for name in ("pack_state", "state_vector", "update_from_state", "get_variable_value", "get_variable_values",
                 "state_index"):
        prof.wrap(WM, name, "pack_unpack")
    prof.wrap(WM, "fg", "pack_unpack", prop=True)
    prof.wrap(window_mod, "solve", "solver", block=True)
    if hasattr(window_mod, "prefix"):  # the solve on the window's used prefix (its host-side cut included)
        prof.wrap(window_mod.prefix, "solve_prefix", "solver", block=True)
    # names introduced by later versions of the window (no-ops when absent)
    for name in ("_pack", "_graph", "_state"):
        prof.wrap(SW, name, "pack_unpack")
    prof.wrap(window_mod, "register", "registration")
    prof.wrap(SW, "_refresh", "surface_shapes")
    prof.wrap(SW, "_place", "local_map")
    if hasattr(window_mod, "LocalMap"):
        prof.wrap(window_mod.LocalMap, "target", "registration")
    return prof


# ------------------------------------------------------------- helpers ---
def rss_mib() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def pct(values, q) -> float:
    return float(np.percentile(np.asarray(values, dtype=float), q)) if len(values) else float("nan")


class BackendCompiles:
    """Counts every XLA backend compile in the process."""

    def __init__(self):
        self.n = 0
        jax.monitoring.register_event_duration_secs_listener(self._on)

    def _on(self, event: str, duration: float, **_kw) -> None:
        if event == "/jax/core/compile/backend_compile_duration":
            self.n += 1


def ate(est: np.ndarray, ref: np.ndarray) -> float:
    """RMS position error after expressing both in their first pose's frame."""
    e = np.linalg.inv(est[0]) @ est
    r = np.linalg.inv(ref[0]) @ ref
    return float(np.sqrt(np.mean(np.sum((e[:, :3, 3] - r[:, :3, 3]) ** 2, axis=1))))


def window_config(args, w: int) -> WindowConfig:
    """The shipped 3D LiDAR configuration (config/lidar_3d.yaml, when this version has
    it) with the bench's window size, voxel sizing and capacities."""
    voxel = VoxelConfig(args.voxel_size, args.min_range, args.max_range)
    fields = {f.name for f in dataclasses.fields(WindowConfig)}
    kw = dict(size=w, voxel=voxel, max_voxels=int(args.voxels_per_window.get(w, 3000)),
              max_observations=int(args.obs_per_keyframe * (w + 1)))
    shipped = Path(__file__).resolve().parents[1] / "config" / "lidar_3d.yaml"
    if shipped.exists():
        from dsg_jit_ros.config import load_pipeline_config

        base = load_pipeline_config(shipped, overrides=args.set)
        kw = {**{f.name: getattr(base.window, f.name) for f in dataclasses.fields(WindowConfig)}, **kw}
    if args.reassociations is not None:
        kw["reassociations"] = args.reassociations
    if "registration_iterations" in fields and args.registration is not None:
        kw["registration_iterations"] = args.registration
    if "max_observations_per_keyframe" in fields and args.obs_per_keyframe_cap is not None:
        kw["max_observations_per_keyframe"] = args.obs_per_keyframe_cap
    return WindowConfig(**kw)


# ----------------------------------------------------------------- main ---
def run_window(args, w: int, n_keyframes: int, prof: Profiler, compiles: BackendCompiles) -> dict:
    run = _Run(args.seed, args.rate)
    # a keyframe every ~0.5 m at ~0.9 m/s: simulate enough time for n_keyframes
    duration = n_keyframes * 0.58 + 2.0
    t = np.arange(0.0, duration, run.dt)
    truth = run.truth(t)
    odom = run.odometry(truth)
    cfg = PipelineConfig(
        window=window_config(args, w),
        keyframe=KeyframeConfig(min_translation=0.5, min_rotation=0.25),
        inputs=InputConfig(compute_covariance=not args.no_covariance),
    )
    pipe = SlamPipeline(cfg)
    wall0 = time.perf_counter()
    warm_s = pipe.warm_up()
    counted0 = pipe.compilations_after_warmup()
    backend0 = compiles.n
    rss0 = rss_mib()
    prof.reset()
    prof.enabled = True
    if args.gc == "freeze":
        gc.collect()
        gc.freeze()
    elif args.gc == "off":
        gc.disable()
    latency, solve_ms, active, obs, iters, kf_stamps, rss_trace = [], [], [], [], [], [], []
    pipe_wall = 0.0
    sim_t = 0.0
    for k in range(len(t)):
        cloud = run.scan(truth[k])
        start = time.perf_counter()
        pipe.add_odometry(float(t[k]), odom[k])
        mid = time.perf_counter()
        # as the node does: publish a keyframe's results, then compute the covariance
        pipe.ingest_cloud(float(t[k]), cloud)
        updates = pipe.process_ready(covariance=False)
        end = time.perf_counter()
        if updates:
            pipe.refresh_covariance()
            if hasattr(pipe, "prepare_registration"):  # versions that place the local map after publishing
                pipe.prepare_registration()
        pipe_wall += time.perf_counter() - start
        sim_t = float(t[k])
        for u in updates:
            latency.append(1e3 * (end - mid))
            solve_ms.append(u.stats.solve_ms)
            active.append(u.stats.active_voxels)
            obs.append(u.stats.factors)
            iters.append(u.stats.iterations)
            kf_stamps.append(u.stamp)
        if updates and pipe.keyframes % 50 == 0:
            rss_trace.append(round(rss_mib(), 1))
        if pipe.keyframes >= n_keyframes:
            break
    prof.enabled = False
    gc.enable()
    gc.unfreeze()
    n = len(latency)
    est = np.array([m for _, m in pipe.window.keyframe_poses])
    idx = np.searchsorted(t, np.array([s for s, _ in pipe.window.keyframe_poses]))
    breakdown = {k: round(v / max(n, 1), 2) for k, v in sorted(prof.ms.items(), key=lambda kv: -kv[1])}
    wcfg = cfg.window
    rec = {
        "bench": "node_latency",
        "world": run.source,
        "window": w,
        "keyframes": n,
        "solves_on_prefix": f"{getattr(pipe.window, 'prefix_solves', 0)} of {getattr(pipe.window, 'solves', '?')}",
        "sizing": {"voxel_size": wcfg.voxel.size, "range": [wcfg.voxel.min_range, wcfg.voxel.max_range],
                   "max_voxels": wcfg.max_voxels, "max_observations": wcfg.max_observations,
                   "reassociations": wcfg.reassociations,
                   "registration_iterations": getattr(wcfg, "registration_iterations", None), "cloud_hz": args.rate,
                   "obs_cap_per_keyframe": getattr(wcfg, "max_observations_per_keyframe", None), "gc": args.gc},
        "latency_ms": {"p50": round(pct(latency, 50), 1), "p95": round(pct(latency, 95), 1),
                       "max": round(max(latency), 1) if latency else None,
                       "max_at_keyframe": int(np.argmax(latency)) if latency else None,
                       "first3": [round(v, 1) for v in latency[:3]]},
        "solve_ms": {"p50": round(pct(solve_ms, 50), 1), "p95": round(pct(solve_ms, 95), 1)},
        "lm_iterations_p50": pct(iters, 50),
        "active_voxels": {"p50": pct(active, 50), "max": max(active) if active else 0},
        "factors": {"p50": pct(obs, 50), "max": max(obs) if obs else 0},
        "dropped": dict(pipe.dropped),
        "compiles_after_warmup": {"counted": pipe.compilations_after_warmup() - counted0,
                                  "backend": compiles.n - backend0},
        "warmup_s": round(warm_s, 1),
        "rss_mib": {"start": round(rss0, 1), "end": round(rss_mib(), 1), "every_50_keyframes": rss_trace,
                    "maxrss": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)},
        "real_time_factor": round(sim_t / pipe_wall, 2) if pipe_wall else None,
        "sim_s": round(sim_t, 1), "pipeline_wall_s": round(pipe_wall, 2),
        "bench_wall_s": round(time.perf_counter() - wall0, 1),
        "ate_m": {"estimate": round(ate(est, truth[idx]), 3), "odometry": round(ate(odom[idx], truth[idx]), 3)},
        "breakdown_ms_per_keyframe": breakdown,
        "wrapped_calls_per_keyframe": {k: round(v / max(n, 1), 1) for k, v in prof.calls.items()},
        "load_avg": [round(x, 2) for x in os.getloadavg()],
    }
    return rec


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--windows", type=int, nargs="+", default=[10, 20, 40])
    ap.add_argument("--keyframes", type=int, default=60, help="keyframes per window size (after warm-up)")
    ap.add_argument("--long", action="store_true", help="300 keyframes (RSS growth over a long run)")
    ap.add_argument("--rate", type=float, default=10.0, help="cloud and odometry rate (Hz)")
    ap.add_argument("--voxel-size", type=float, default=0.65)
    ap.add_argument("--min-range", type=float, default=0.3)
    ap.add_argument("--max-range", type=float, default=15.0)
    ap.add_argument("--obs-per-keyframe", type=float, default=1000,
                    help="max_observations = this x (window + 1)")
    ap.add_argument("--obs-per-keyframe-cap", type=int, default=None,
                    help="WindowConfig.max_observations_per_keyframe (when the window has it)")
    ap.add_argument("--max-voxels", type=str, default="10:2400,20:3000,40:4000",
                    help="max_voxels per window size, 'w:n,...'")
    ap.add_argument("--reassociations", type=int, default=None, help="override WindowConfig.reassociations")
    ap.add_argument("--registration", type=int, default=None,
                    help="override WindowConfig.registration_iterations (when the window has it)")
    ap.add_argument("--no-covariance", action="store_true")
    ap.add_argument("--set", nargs="*", default=[], metavar="NAME=VALUE",
                    help="parameter overrides of config/lidar_3d.yaml (when this version has it)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--gc", choices=("on", "freeze", "off"), default="on",
                    help="Python GC during the timed keyframes (diagnostic: latency spikes from gen-2 collections)")
    args = ap.parse_args(argv)
    args.voxels_per_window = {int(a): int(b) for a, b in (p.split(":") for p in args.max_voxels.split(","))}
    n_kf = 300 if args.long else args.keyframes
    prof = install_profiler()
    compiles = BackendCompiles()
    for w in args.windows:
        rec = run_window(args, w, n_kf, prof, compiles)
        print(json.dumps(rec), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
