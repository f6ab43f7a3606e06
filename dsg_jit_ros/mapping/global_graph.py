"""The global pose graph: every keyframe that left the window, chained, plus loop closures.

A keyframe leaving the sliding window becomes a node at the window's final estimate
``T_map_body`` and keeps its voxel observations (``CellObservations``, body frame):
its *submap*, placed wherever the node goes, so the map moves with the graph.
Consecutive nodes are linked by ``between_se3`` factors measuring the window's
relative estimate, with sigmas that grow with the motion between them
(``LoopConfig.chain_*``).  Loop closures (``mapping.loop_closure``) add
``between_se3`` factors with a Cauchy kernel on the whitened residual, whitened by
the edge's square-root information ``LoopEdge.sqrt_info`` (6x6, tangent [rho (m),
phi (rad)] of the newer node; isotropic loop sigmas, or for a partial loop only the
directions its registration pins, ``mapping.loop_information``).  A wrong one that
slipped through verification is refused by a chi-square test against the chain's
propagated covariance before the solve (in the directions the edge constrains), or
removed after it when its whitened residual stays large.

The graph lives in one WorldModel whose compiled shapes start at
``LoopConfig.initial_capacity`` nodes and double as the graph grows (each growth
recompiles the jitted LM with the host sparse Cholesky once, in the loop thread: a
solve's cost grows with the padded capacity, so a short run keeps small shapes),
up to ``LoopConfig.capacity`` live nodes.  A loop can only close onto a live node,
so that bound is generous: at mit-csail's 3 keyframes/s, 8192 nodes are 45 minutes.
When it is full, the oldest eighth of the nodes is merged away at once: their poses stay as
they are (``all_poses``), their submaps are folded into one voxel map
(``retired_map``, replaced by a new object each time so that a reader's copy stays
valid) and dropped, so memory stays bounded by the mapped area, and the oldest
remaining node is held by a prior.
Planar mode: nodes are planar poses with z, roll and pitch fixed in the solver.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dsg_jit_ros.mapping.association import CellObservations
from dsg_jit_ros.mapping.local_map import placed_map
from dsg_jit_ros.mapping.loop_information import estimated_dofs, free_directions, isotropic_sqrt_info, slide_along_free
from dsg_jit_ros.mapping.planar import PLANAR_FIXED
from dsg_jit_ros.mapping.voxel_map import VoxelMap
from dsg_jit_ros.optimization.compile_count import compile_count
from dsg_jit_ros.optimization.solvers import LMConfig, solve
from dsg_jit_ros.slam.measurements import between_se3_residual, prior_residual
from dsg_jit_ros.geometry.poses import adjoint_matrix, pose_matrices, pose_values
from dsg_jit_ros.world.model import WorldModel

_IDENTITY = np.eye(4)
_IDENTITY.flags.writeable = False
RETIRE_FRACTION = 8  # a full graph retires capacity // RETIRE_FRACTION nodes at once
CHI2_999 = {1: 10.83, 2: 13.82, 3: 16.27, 4: 18.47, 5: 20.52, 6: 22.46}  # 99.9 % chi-square quantiles by dof
PLAIN_SCALE = 1e6  # a Cauchy kernel this wide is least squares for any loop error that can occur
DRIFT_WINDOW_SIGMAS = 3.0  # the drift window (``LoopConfig.drift_radius``) spans this many sigmas of the drift


@dataclass(frozen=True)
class LoopConfig:
    """Global graph and loop closure settings (metres, radians, seconds).

    Chain edges between consecutive nodes: sigma ``chain_sigma_translation +
    chain_translation_scale * |travel|`` (m) and ``chain_sigma_rotation +
    chain_rotation_scale * |turn|`` (rad).  Loop edges: sigmas ``sigma_translation``
    (m) and ``sigma_rotation`` (rad) with a Cauchy kernel of scale ``kernel_scale``
    (whitened units); with ``partial``, a loop whose registration pins all directions
    but one translation (a corridor) is accepted too, its edge constraining only the
    pinned directions (``mapping.loop_information``).

    Candidates for a new node: nodes at least ``min_interval`` older whose estimate
    lies within ``search_radius + drift_per_metre * travelled`` (the distance
    travelled since the candidate, a bound on the drift accumulated since; with
    ``drift_rotation_per_metre * travelled`` (rad) for heading, they gate a loop's
    correction against the chain);
    at most ``max_candidates`` nearest ones are verified, and a node is tried only
    every ``min_spacing`` metres of travel.  A candidate is verified by registering
    the voxel means of the last metres of travel (``mapping.loop_closure``) against the
    submap of the candidate's ``submap_keyframes`` neighbours on each side (and other
    passes near it): it must converge without a degenerate direction (``partial``: at
    most one, a translation), match
    ``min_overlap`` of the points with RMS whitened residual below ``max_rmse``, and be
    confirmed by a second match nearby.  After the global solve a loop edge whose whitened
    residual is above ``max_residual`` is removed (it disagrees with the rest).
    """

    enabled: bool = False
    capacity: int = 8192
    initial_capacity: int = 2048
    min_interval: float = 30.0
    horizon_travel: float = 0.0
    search_radius: float = 2.0
    drift_per_metre: float = 0.04
    drift_rotation_per_metre: float = 0.006
    max_candidates: int = 3
    min_spacing: float = 1.0
    submap_keyframes: int = 10
    min_overlap: float = 0.5
    max_rmse: float = 1.3
    chain_sigma_translation: float = 0.005
    chain_translation_scale: float = 0.01
    chain_sigma_rotation: float = 0.001
    chain_rotation_scale: float = 0.01
    sigma_translation: float = 0.05
    sigma_rotation: float = 0.01
    kernel_scale: float = 3.0
    max_residual: float = 5.0
    solver_iterations: int = 20
    partial: bool = False

    def __post_init__(self) -> None:
        if self.capacity < 4 or self.initial_capacity < 4:
            raise ValueError(f"loop capacity and initial_capacity must be >= 4 nodes, got {self.capacity} "
                             f"and {self.initial_capacity}")
        for name in ("search_radius", "chain_sigma_translation", "chain_sigma_rotation", "sigma_translation",
                     "sigma_rotation", "kernel_scale", "max_residual", "max_rmse"):
            if not getattr(self, name) > 0:
                raise ValueError(f"loop.{name} must be positive, got {getattr(self, name)}")
        if min(self.min_interval, self.drift_per_metre, self.drift_rotation_per_metre, self.min_spacing,
               self.chain_translation_scale,
               self.chain_rotation_scale) < 0 or not 0 <= self.min_overlap <= 1:
            raise ValueError("loop intervals, spacings and scales must be >= 0 and min_overlap in [0, 1]")
        if self.max_candidates < 1 or self.submap_keyframes < 0 or self.solver_iterations < 1:
            raise ValueError("loop.max_candidates, solver_iterations >= 1 and submap_keyframes >= 0")

    def chain_sigmas(self, increment: np.ndarray) -> np.ndarray:
        """(6,) sigmas of a chain edge with relative pose ``increment`` (4x4), [rho, phi]."""
        travel = float(np.linalg.norm(increment[:3, 3]))
        turn = float(np.linalg.norm(pose_values(increment[None])[0, 3:]))
        return np.array([self.chain_sigma_translation + self.chain_translation_scale * travel] * 3
                        + [self.chain_sigma_rotation + self.chain_rotation_scale * turn] * 3)

    def drift_radius(self, travelled):
        """Bound (m) on the drift accumulated over ``travelled`` metres (a number or an
        array): candidates are searched within it, and a loop's correction is gated by it."""
        return self.search_radius + self.drift_per_metre * np.asarray(travelled, dtype=np.float64)

    def drift_angle(self, travelled: float) -> float:
        """Bound (rad) on the heading drift accumulated over ``travelled`` metres: a loop's
        rotation is gated by it (wheel odometry drifts by tens of degrees over a loop)."""
        return self.drift_rotation_per_metre * float(travelled)

    def loop_sigmas(self) -> np.ndarray:
        return np.array([self.sigma_translation] * 3 + [self.sigma_rotation] * 3)


def _shapes(fg) -> tuple[int, ...]:
    """What a solve's compiled program depends on: the state size and each batch's capacity."""
    return (fg.state_size,) + tuple(b.mask.shape[0] for b in fg.batches)


@dataclass
class Node:
    """A keyframe in the global graph: its submap and where it stands."""

    stamp: float
    var: int
    level: np.ndarray  # T_planar_body (identity unless planar): T_map_body = pose @ level
    cells: CellObservations | None  # the submap: its voxel observations, body frame
    travelled: float  # metres along the trajectory from the first node
    key_offset: np.ndarray  # T_body_keybody: the pose its cells were keyed under is pose @ key_offset
    chain: tuple[np.ndarray, np.ndarray] | None = None  # (T_prev_this, sigmas) of the edge from the previous node


@dataclass(frozen=True, eq=False)
class LoopEdge:
    """A loop closure: node ``older`` sees node ``newer`` at ``t_older_newer``, with the
    square-root information ``sqrt_info`` (6x6: whitened residual ``W log(Z^-1 T_i^-1
    T_j)``, tangent [rho (m), phi (rad)] in the newer node's frame)."""

    older: int
    newer: int
    t_older_newer: np.ndarray
    factor: int
    sqrt_info: np.ndarray

    @property
    def information(self) -> np.ndarray:
        """(6, 6) ``W^T W``."""
        return self.sqrt_info.T @ self.sqrt_info


class GlobalGraph:
    """Nodes (frozen keyframes) chained by the window's estimates, plus loop edges."""

    def __init__(self, cfg: LoopConfig, planar: bool = False, voxel_size: float = 1.0):
        """``voxel_size`` (m): the grid retired submaps are folded into."""
        self.cfg = cfg
        self.planar = bool(planar)
        self.retired_map = VoxelMap(voxel_size)  # submaps of the retired nodes, at their last poses
        start = min(cfg.initial_capacity, cfg.capacity)
        self.wm = WorldModel(var_capacity={"pose_se3": start}, factor_capacity={"between_se3": 2 * start, "prior": 1})
        self.wm.register_residual("between_se3", between_se3_residual)
        self.wm.register_residual("prior", prior_residual)
        self.wm.declare_factor_type("prior", ("pose_se3",), {"target": np.zeros(6)})
        self.wm.declare_factor_type("between_se3", ("pose_se3", "pose_se3"), {"T_ij": np.eye(4)})
        self.nodes: list[Node] = []  # in order; index = position in this list
        self.first = 0  # index of the oldest node still in the WorldModel
        self.loops: list[LoopEdge] = []
        self.rejected_loops = 0  # removed after a global solve (residual above max_residual)
        self._anchor: int | None = None
        self._chain: dict[int, int] = {}  # node index -> factor from the previous node
        self._retired: list[np.ndarray] = []  # last poses of the nodes merged away (index < first)
        self._checked: set[int] = set()  # loop factors that passed the chain test
        self._solved_shapes = _shapes(self.wm.fg)  # the shapes the warm-up compiles (``mapping.warm_up``)
        self.growth_compiles = 0  # compilations caused by the capacity growing (see ``_solve``)

    def __len__(self) -> int:
        return len(self.nodes)

    def set_planar(self, planar: bool) -> None:
        if self.nodes:
            raise RuntimeError("planar mode can only be chosen before the first node")
        self.planar = bool(planar)

    def poses(self, indices) -> np.ndarray:
        """(n, 4, 4) estimates (planar part in planar mode) of nodes still in the graph."""
        return pose_matrices(self.wm.get_variable_values([self.nodes[i].var for i in indices]).reshape(-1, 6))

    def all_poses(self) -> np.ndarray:
        """(n, 4, 4) every node's estimate, retired ones at their last pose."""
        live = self.poses(range(self.first, len(self.nodes)))
        return np.concatenate([np.array(self._retired).reshape(-1, 4, 4), live])

    def add(self, stamp: float, t_map_body: np.ndarray, level: np.ndarray, cells: CellObservations | None,
            t_key: np.ndarray | None = None) -> int:
        """Append a node at the window's estimate (``t_key``: the pose its cells were keyed
        under, default ``t_map_body``); returns its index."""
        if len(self.nodes) - self.first >= self.cfg.capacity:
            self._retire(max(1, self.cfg.capacity // RETIRE_FRACTION))
        var = int(self.wm.add_variables("pose_se3", pose_values(t_map_body[None]))[0])
        if self.planar:
            self.wm.set_fixed_dofs([var], PLANAR_FIXED)
        travelled, chain = 0.0, None
        if self.nodes:
            prev = self.nodes[-1]
            inc = np.linalg.inv(self.poses([len(self.nodes) - 1])[0]) @ t_map_body
            travelled = prev.travelled + float(np.linalg.norm(inc[:3, 3]))
            chain = (inc, self.cfg.chain_sigmas(inc))
            self._chain[len(self.nodes)] = self.wm.add_factor(
                "between_se3", (prev.var, var), {"T_ij": inc, "sigma": chain[1]})
        else:
            self._anchor = self.wm.add_factor("prior", (var,), {"target": pose_values(t_map_body[None])[0],
                                                                 "sigma": 1e-6})
        key_offset = np.eye(4) if t_key is None else np.linalg.inv(t_map_body) @ t_key
        self.nodes.append(Node(float(stamp), var, np.asarray(level, dtype=np.float64), cells, travelled, key_offset,
                               chain))
        return len(self.nodes) - 1

    def add_loop(self, older: int, newer: int, t_older_newer: np.ndarray,
                 sqrt_info: np.ndarray | None = None) -> LoopEdge:
        """A loop edge between two nodes in the graph (Cauchy kernel); ``sqrt_info``
        (6x6, see ``LoopEdge``) defaults to the isotropic loop sigmas.  Along directions
        the edge leaves free the measurement says nothing: it is replaced there by the
        current estimate (a look-alike place metres along a corridor would otherwise
        leak into the pinned directions through the SE(3) logarithm of the residual)."""
        if not (self.first <= older < newer < len(self.nodes)):
            raise ValueError(f"loop ({older}, {newer}) needs nodes in the graph, oldest first")
        w = isotropic_sqrt_info(self.cfg.loop_sigmas()) if sqrt_info is None else np.array(sqrt_info, dtype=np.float64)
        if w.shape != (6, 6) or not np.all(np.isfinite(w)):
            raise ValueError(f"a loop's sqrt_info must be a finite 6x6 matrix, got shape {w.shape}")
        free = free_directions(w, self.planar)
        if len(free):
            ti, tj = self.poses([older, newer])
            _, t_older_newer = slide_along_free(t_older_newer, np.linalg.inv(t_older_newer) @ np.linalg.inv(ti) @ tj,
                                                free)
        fid = self.wm.add_factor("between_se3", (self.nodes[older].var, self.nodes[newer].var), {
            "T_ij": np.asarray(t_older_newer, dtype=np.float64), "sqrt_info": w,
            "robust": ("cauchy", self.cfg.kernel_scale)})
        edge = LoopEdge(older, newer, np.asarray(t_older_newer, dtype=np.float64), fid, w)
        self.loops.append(edge)
        return edge

    def optimize(self) -> np.ndarray:
        """Solve the graph (LM, sparse Cholesky) in two rounds: loop edges first without
        their robust kernel (a verified loop after a long drift starts hundreds of sigmas
        off, where the kernel would ignore it), then loop edges left with a whitened error
        above ``max_residual`` are removed as inconsistent with the rest, and the graph is
        solved again from the start with the Cauchy kernel.  Returns the (n, 4, 4) poses
        before the solve."""
        before = self.all_poses()
        self._drop(e for e in self.loops if e.factor not in self._checked and not self._chain_agrees(e))
        self._checked.update(e.factor for e in self.loops)
        if not self.loops:
            return before
        fids = np.array([e.factor for e in self.loops], dtype=np.int64)
        self.wm.set_factors(fids, {"robust": ("cauchy", PLAIN_SCALE)})
        self._solve()
        bad = [e for e in self.loops if self._whitened_error(e) > self.cfg.max_residual]
        if bad:
            self._drop(bad)
            for node, value in zip(self.nodes[self.first:], pose_values(before[self.first:])):
                self.wm.set_variable_value(node.var, value)
        if self.loops:
            self.wm.set_factors(np.array([e.factor for e in self.loops], dtype=np.int64),
                                {"robust": ("cauchy", self.cfg.kernel_scale)})
        self._solve()
        return before

    def _drop(self, edges) -> None:
        """Remove loop edges (counted in ``rejected_loops``)."""
        edges = list(edges)
        if edges:
            self.wm.remove_factors(np.array([e.factor for e in edges], dtype=np.int64))
            self.loops = [e for e in self.loops if e not in edges]
            self.rejected_loops += len(edges)

    def _chain_agrees(self, edge: LoopEdge) -> bool:
        """Chi-square test of a new loop edge against the chain between its nodes: the
        loop's error at the current estimate, whitened by the chain's propagated relative
        covariance, the drift window's and the loop edge's own covariance, is below the
        99.9 % quantile; a partial edge is tested in the directions it constrains (the
        error and the covariances seen through its square-root information, the edge's
        own covariance the identity there).  The chain's sigmas are the window's own
        claim; on real logs its estimates drift by metres and tens of degrees over a long
        loop (mit-csail: 0.24 rad over 73 m, 0.39 rad over 200 m, 0.23 rad and 3.8 m over
        39 m when an earlier loop was missed), which the drift window
        (``LoopConfig.drift_radius`` and ``drift_angle``, ``DRIFT_WINDOW_SIGMAS`` sigmas)
        accounts for, as in the candidate search.  A look-alike place far outside both is
        refused before it can bend the map."""
        i, j = edge.older, edge.newer
        cov = np.zeros((6, 6))
        tail = np.eye(4)  # product of the chain edges after edge k, up to node j
        for k in range(j, i, -1):
            inc, sig = self.nodes[k].chain
            ad = adjoint_matrix(np.linalg.inv(tail))
            cov += ad @ np.diag(sig ** 2) @ ad.T
            tail = inc @ tail
        ti, tj = self.poses([i, j])
        err = pose_values((np.linalg.inv(edge.t_older_newer) @ np.linalg.inv(ti) @ tj)[None])[0]
        travelled = self.nodes[j].travelled - self.nodes[i].travelled
        drift = np.array([self.cfg.drift_radius(travelled)] * 3 + [self.cfg.drift_angle(travelled)] * 3)
        cov += np.diag((drift / DRIFT_WINDOW_SIGMAS) ** 2)
        dofs = estimated_dofs(self.planar)
        w = edge.sqrt_info[:, dofs]
        w = w[np.linalg.norm(w, axis=1) > 0]  # the constrained directions (planar: their rows on dofs)
        e = w @ err[dofs]
        m2 = float(e @ np.linalg.solve(w @ cov[np.ix_(dofs, dofs)] @ w.T + np.eye(len(w)), e))
        return m2 <= CHI2_999[len(w)]

    def _solve(self) -> None:
        """One LM solve; the compilations of the first solve after the capacity grew are
        counted in ``growth_compiles`` (planned: not a shape leak)."""
        cfg = LMConfig(linear_solver="sparse", max_iters=self.cfg.solver_iterations, rel_tol=1e-8)
        fg = self.wm.fg
        shapes = _shapes(fg)
        before = compile_count()
        result = solve(fg, self.wm.state_vector(), cfg=cfg)
        if shapes != self._solved_shapes:
            self.growth_compiles += compile_count() - before
        self._solved_shapes = shapes
        self.wm.update_from_state(result.x)

    def _whitened_error(self, edge: LoopEdge) -> float:
        """|W log(T_ij^-1 T_i^-1 T_j)| of a loop edge at the current estimate (``W``: its
        square-root information)."""
        ti, tj = self.poses([edge.older, edge.newer])
        err = pose_values((np.linalg.inv(edge.t_older_newer) @ np.linalg.inv(ti) @ tj)[None])[0]
        if self.planar:
            err[PLANAR_FIXED] = 0.0
        return float(np.linalg.norm(edge.sqrt_info @ err))

    def _retire(self, n: int) -> None:
        """Take the ``n`` oldest nodes out of the WorldModel: their poses stay as they are
        now, their submaps are folded into a new ``retired_map`` and dropped."""
        n = min(n, len(self.nodes) - self.first - 1)
        if n < 1:
            return
        gone = list(range(self.first, self.first + n))
        poses = self.poses(gone)
        self._retired.extend(poses)
        folded = placed_map([(self.nodes[i].cells, p, p @ self.nodes[i].key_offset) for i, p in zip(gone, poses)],
                            self.retired_map.voxel_size)
        merged = VoxelMap(self.retired_map.voxel_size)
        for part in (self.retired_map, folded):
            merged.add(part.keys, part.all_stats())
        self.retired_map = merged
        fids = [self._anchor] + [self._chain.pop(i + 1) for i in gone if i + 1 in self._chain]
        fids += [e.factor for e in self.loops if e.older in gone]
        self.loops = [e for e in self.loops if e.older not in gone]
        self.wm.remove_factors(np.array([f for f in fids if f is not None], dtype=np.int64))
        self.wm.remove_variables(np.array([self.nodes[i].var for i in gone], dtype=np.int64))
        for i in gone:  # keep what the trajectory needs (stamp, level); drop the rest
            node = self.nodes[i]
            node.cells, node.chain, node.key_offset = None, None, _IDENTITY
        self.first += n
        nxt = self.nodes[self.first]
        self._anchor = self.wm.add_factor("prior", (nxt.var,), {"target": self.wm.get_variable_value(nxt.var),
                                                                 "sigma": 1e-6})
