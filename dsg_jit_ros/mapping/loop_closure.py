"""Loop closure: candidates for a new global-graph node, verified by registration.

``LoopCloser.process(graph, newest)`` runs when a node joins the global graph:
1. **Candidates** (``candidates``): older nodes (``min_interval`` seconds or more)
   whose estimate lies within the search radius of the newest one, the radius
   growing with the distance travelled since the candidate (drift); the nearest
   few, no two from the same stretch of trajectory.
2. **Verification** (``verify``): the voxel means of the newest node and of its
   predecessors over the last ``SCAN_LENGTH`` metres of travel (a local scan, placed
   relative to the newest node: long enough to hold a corner where a corridor alone
   slides) are registered (``mapping.registration``: point-to-plane, Cauchy kernel)
   against a submap: the candidate, its ``submap_keyframes`` neighbours on each side
   and as many nodes of other passes within ``SUBMAP_RADIUS`` of it (a room the robot
   wandered through for a minute is more than one stretch of trajectory), with a
   loose prior, from the current relative estimate; when that fails in planar mode, again from the best pose of a
   correlative search over the drift window (``mapping.correlative``: metres of
   drift are beyond the reach of point-to-plane registration), unless the search's
   peak is a near tie (``COARSE_SEARCH_AMBIGUITY``); a loop so seeded is refused as
   ``ambiguous`` when a place elsewhere scores above ``COARSE_MAX_AMBIGUITY`` of the
   best (for a partial loop, only places off the line of its free direction count).
   Accepted when it converges, matches ``min_overlap`` of the points
   with a small RMS whitened residual, moves the estimate by a plausible amount, and
   the scan alone pins every direction to better than the loop edge's sigma (the
   smallest eigenvalue of its Hessian, in units of the loop edge's information,
   is at least 1): along a featureless corridor a look-alike place is not a loop.
   With ``LoopConfig.partial`` a match that pins all but one direction, a
   translation (a corridor: lateral position and heading, not the position along it),
   is accepted too, as a *partial* loop whose edge constrains only what the scan
   pins (``mapping.loop_information``); one matched more than ``IN_PLACE_SLIDE``
   along its free direction from the estimate (a look-alike stretch of corridor) is
   registered again where the estimate puts it, so that the walls there, not a
   direction known to a degree, give its lateral position and heading.
3. A verified loop waits for a second one that implies the same correction of the
   map (compared in the directions both pin); both then become ``between_se3`` edges
   (their square-root information ``LoopAttempt.sqrt_info``, Cauchy kernel) in the
   graph, which gates them against its chain and the drift window
   (``GlobalGraph.optimize``).
The caller solves the graph and re-bases the window and map.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from dsg_jit_ros.mapping.correlative import correlative_match_2d
from dsg_jit_ros.mapping.global_graph import DRIFT_WINDOW_SIGMAS, GlobalGraph, LoopConfig
from dsg_jit_ros.mapping.loop_information import (corrections_agree, free_directions, loop_sqrt_info,
                                                  slide_along_free, translation_conditioning)
from dsg_jit_ros.mapping.registration import RegistrationConfig, SurfaceTarget, register
from dsg_jit_ros.mapping.local_map import placed_map
from dsg_jit_ros.mapping.voxel_map import SurfaceConfig

LOOP_PRIOR_ROTATION = 0.2  # rad: prior sigma of the rotation correction while verifying
SUBMAP_RADIUS = 5.0  # m: nodes of any pass this close to the candidate join its submap
SCAN_LENGTH = 5.0  # m: the scan holds the nodes of the last this much travel (a corner, not only a corridor)
SCAN_MAX_KEYFRAMES = 40  # at most this many (turning on the spot makes keyframes without travel)
CONFIRM_WITHIN = 3  # a verified loop needs an agreeing one within this many attempts
CONFIRM_TRAVEL = 10.0  # m: ... and within this much travel (two loops implying no correction, far
#                        apart, agree trivially: that is no confirmation)
COARSE_REACH = 10.0  # m: scan points within this range of the body take part in the correlative search
COARSE_MAX_YAW = 0.6  # rad: the correlative search's yaw window grows with the heading drift up to this
COARSE_MIN_SCORE = 0.25  # mean likelihood of the scan at the correlative search's best pose
# a correlative search whose best score elsewhere (> 1 m away) is above this fraction of the
# best is a near tie in every direction: not even registered
COARSE_SEARCH_AMBIGUITY = 0.97
# a loop seeded by the search is accepted only if the best score elsewhere, off the line of
# the directions it leaves free (a partial loop: along the corridor), stays below this
# fraction: a second scan a metre on sees the same two peaks, so agreeing with it does not
# settle a near tie (mit-csail, wider drift window: a pair at 0.95 / 0.94 moved the map 3 m
# the wrong way)
COARSE_MAX_AMBIGUITY = 0.9
AMBIGUITY_LINE = 0.5  # m: look-alikes this close to the free direction's line are harmless to a partial loop
COARSE_RETRY = ("few_matches", "no_convergence", "too_far", "rmse")  # registration failures worth a coarse search
# a partial loop matched more than this far (m) along its free direction from the estimate is
# measured again there (``_measure_in_place``): carried metres along a direction known to a
# degree or so, its pinned translation would be off by centimetres per metre
IN_PLACE_SLIDE = 1.0


@dataclass(frozen=True)
class LoopAttempt:
    """One verified candidate: accepted or why not (for logs and ``~/status``)."""

    older: int
    newer: int
    accepted: bool
    reason: str  # "accepted", "no_convergence", "few_matches", "rmse", "degenerate", "too_far", "no_coarse_match",
    #              "ambiguous", "not_in_place" (a partial loop that could not be measured again where it is)
    overlap: float = 0.0
    rmse: float = float("nan")
    correction_m: float = 0.0
    conditioning: float = 0.0  # smallest / largest eigenvalue of the scan's translation information
    ambiguity: float = 0.0  # planar: correlative search's best score elsewhere / its best score
    t_older_newer: np.ndarray | None = None
    sqrt_info: np.ndarray | None = None  # (6, 6) the loop edge's square-root information (accepted)
    partial: bool = False  # the edge leaves a direction free (``mapping.loop_information``)
    in_place: bool = False  # measured again where the estimate puts it (``LoopCloser._measure_in_place``)


def candidates(graph: GlobalGraph, newest: int, cfg: LoopConfig) -> list[int]:
    """Older nodes near ``newest`` (see the module doc), nearest first."""
    node = graph.nodes[newest]
    first = graph.first
    older = [i for i in range(first, newest) if graph.nodes[i].stamp <= node.stamp - cfg.min_interval]
    if not older:
        return []
    poses = graph.poses(older + [newest])
    dist = np.linalg.norm(poses[:-1, :3, 3] - poses[-1, :3, 3], axis=1)
    travelled = node.travelled - np.array([graph.nodes[i].travelled for i in older])
    near = np.flatnonzero(dist <= cfg.drift_radius(travelled))
    chosen: list[int] = []
    for k in near[np.argsort(dist[near], kind="stable")].tolist():
        if all(abs(older[k] - c) > cfg.submap_keyframes for c in chosen):
            chosen.append(older[k])
        if len(chosen) == cfg.max_candidates:
            break
    return chosen


class LoopCloser:
    """Finds and verifies loops for new global-graph nodes (see the module doc)."""

    def __init__(self, cfg: LoopConfig, voxel_size: float, surface: SurfaceConfig, registration: RegistrationConfig):
        self.cfg = cfg
        self.voxel_size = float(voxel_size)
        self.surface = dataclasses.replace(surface, slide=np.inf)  # point-to-plane, as registration
        self.registration = dataclasses.replace(registration, max_correction_sigma=DRIFT_WINDOW_SIGMAS,
                                                degeneracy_ratio=0.0, min_matches=max(registration.min_matches, 20))
        self._last_try = -np.inf  # travelled (m) at the last attempt
        self._tries = 0  # attempts so far
        # (verified, its correction, try, travelled at it (m))
        self._pending: tuple[LoopAttempt, np.ndarray, int, float] | None = None
        self.attempts: list[LoopAttempt] = []

    def process(self, graph: GlobalGraph, newest: int) -> list[LoopAttempt]:
        """Try to close loops from node ``newest``; returns the attempts.  A verified loop
        waits for a second one, verified within ``CONFIRM_WITHIN`` attempts and
        ``CONFIRM_TRAVEL`` metres, that implies the same correction of the map (within
        the loop edge's sigmas); then both are added to the graph (returned
        ``accepted``).  A lone match is ``unconfirmed``."""
        if not self.cfg.enabled:
            return []
        node = graph.nodes[newest]
        if node.travelled - self._last_try < self.cfg.min_spacing:
            return []
        found = candidates(graph, newest, self.cfg)
        if not found:
            return []
        self._last_try = node.travelled
        self._tries += 1
        out = []
        for older in found:
            attempt = self.verify(graph, older, newest)
            if not attempt.accepted:
                out.append(attempt)
                continue
            t_older, t_newer = graph.poses([older, newest])
            correction = t_older @ attempt.t_older_newer @ np.linalg.inv(t_newer)
            pending = self._pending
            if (pending is not None and self._tries - pending[2] <= CONFIRM_WITHIN
                    and node.travelled - pending[3] <= CONFIRM_TRAVEL
                    and self._agree(graph, attempt, correction, pending[0], pending[1], t_newer)):
                first = pending[0]
                graph.add_loop(first.older, first.newer, first.t_older_newer, first.sqrt_info)
                graph.add_loop(older, newest, attempt.t_older_newer, attempt.sqrt_info)
                self._pending = None
                out += [first, attempt]
            else:
                self._pending = (attempt, correction, self._tries, node.travelled)
                out.append(dataclasses.replace(attempt, accepted=False, reason="unconfirmed"))
            break
        self.attempts.extend(out)
        return out

    def _agree(self, graph: GlobalGraph, attempt: LoopAttempt, a: np.ndarray, first: LoopAttempt, b: np.ndarray,
               at: np.ndarray) -> bool:
        """Two map corrections (4x4: ``a`` of ``attempt``, ``b`` of the pending ``first``)
        equal within the loop edge's sigmas where they act: on the pose ``at`` (a small
        rotation about the map origin moves a far robot a lot); with a partial loop, only
        in the directions both loops pin (``loop_information.corrections_agree``)."""
        planar = graph.planar
        free = [(free_directions(x.sqrt_info, planar), graph.poses([x.newer])[0])
                for x in (attempt, first) if x.partial]
        if free:
            return corrections_agree(a, b, at, free, self.cfg.loop_sigmas(), planar)
        d = np.linalg.inv(a @ at) @ (b @ at)
        angle = np.arccos(np.clip((np.trace(d[:3, :3]) - 1.0) / 2.0, -1.0, 1.0))
        return bool(np.linalg.norm(d[:3, 3]) <= self.cfg.sigma_translation
                    and angle <= self.cfg.sigma_rotation)

    def verify(self, graph: GlobalGraph, older: int, newer: int) -> LoopAttempt:
        """Register the newest nodes' local scan to the submap around ``older``."""
        cfg, m = self.cfg, self.cfg.submap_keyframes
        t_older = graph.poses([older])[0]
        t_older_inv = np.linalg.inv(t_older)
        # the submap around the candidate, in the candidate's frame
        lo, hi = max(graph.first, older - m), min(newer, older + m + 1)
        stamp_new = graph.nodes[newer].stamp
        around = [i for i in range(lo, hi) if graph.nodes[i].stamp <= stamp_new - cfg.min_interval]
        # plus the nodes of other passes near the candidate (a room seen for a minute)
        old = [i for i in range(graph.first, newer) if graph.nodes[i].stamp <= stamp_new - cfg.min_interval]
        old_poses = graph.poses(old)  # the submap's nodes are among these
        near_d = np.linalg.norm(old_poses[:, :3, 3] - t_older[:3, 3], axis=1)
        extra = [old[k] for k in np.argsort(near_d, kind="stable") if near_d[k] <= SUBMAP_RADIUS]
        around = sorted(set(around) | set(extra[: 2 * m + 1]))
        pose_of = dict(zip(old, old_poses))
        submap = placed_map([(graph.nodes[i].cells, t_older_inv @ pose_of[i], t_older_inv @ pose_of[i])
                             for i in around], self.voxel_size)
        rows = np.arange(len(submap))
        target = SurfaceTarget.build(submap.keys, submap.means(), submap.surfaces(rows, self.surface), self.voxel_size)
        # the local scan: the newest node and its predecessors, in the newest node's frame
        travelled_new = graph.nodes[newer].travelled
        recent = [i for i in range(max(graph.first, newer - SCAN_MAX_KEYFRAMES), newer + 1)
                  if travelled_new - graph.nodes[i].travelled <= SCAN_LENGTH]
        poses = graph.poses(recent)
        t_newer = poses[-1]
        rel = np.linalg.inv(t_newer) @ poses  # each recent node in the newest node's frame
        pts = np.concatenate([graph.nodes[i].cells.mean_body @ r[:3, :3].T + r[:3, 3]
                              for i, r in zip(recent, rel) if graph.nodes[i].cells is not None])
        t_pred = t_older_inv @ t_newer  # the newest node in the candidate's frame
        travelled = graph.nodes[newer].travelled - graph.nodes[older].travelled
        radius = cfg.drift_radius(travelled)
        prior = np.array([radius / DRIFT_WINDOW_SIGMAS] * 3 + [LOOP_PRIOR_ROTATION] * 3)  # window = 3 sigma
        if len(target) < self.registration.min_matches or len(pts) < self.registration.min_matches:
            return LoopAttempt(older, newer, False, "few_matches")
        attempt = self._register(older, newer, pts, t_pred, t_pred, target, prior, graph.planar, 0.0)
        if not graph.planar or attempt.reason not in COARSE_RETRY:
            return self._measure_in_place(attempt, pts, t_pred, target, prior, graph.planar)
        # metres of drift: a correlative search over the drift window seeds a second registration
        near = pts[np.linalg.norm(pts[:, :2], axis=1) <= COARSE_REACH, :2]
        if len(near) < self.registration.min_matches:
            return attempt
        yaw_range = float(np.clip(cfg.drift_angle(travelled) / 2, LOOP_PRIOR_ROTATION, COARSE_MAX_YAW))
        coarse = correlative_match_2d(near, submap.means()[:, :2], t_pred, radius, yaw_range,
                                      self.voxel_size)
        ambiguity = coarse.runner_up / max(coarse.score, 1e-12)
        if coarse.score < COARSE_MIN_SCORE or ambiguity > COARSE_SEARCH_AMBIGUITY:
            return LoopAttempt(older, newer, False, "no_coarse_match", ambiguity=ambiguity)
        attempt = self._register(older, newer, pts, coarse.t_target_scan, t_pred, target, prior, graph.planar,
                                 ambiguity)
        if attempt.accepted and ambiguity > COARSE_MAX_AMBIGUITY:
            across = ambiguity
            if attempt.partial:  # only look-alikes off the corridor's line matter
                free = free_directions(attempt.sqrt_info, graph.planar)[0, :3]  # newer node's frame
                along = (attempt.t_older_newer[:3, :3] @ free)[:2]  # the target's (candidate's) frame
                across = coarse.runner_up_across(along, AMBIGUITY_LINE) / max(coarse.score, 1e-12)
            if across > COARSE_MAX_AMBIGUITY:
                return dataclasses.replace(attempt, accepted=False, reason="ambiguous", t_older_newer=None,
                                           sqrt_info=None)
        return self._measure_in_place(attempt, pts, t_pred, target, prior, graph.planar)

    def _measure_in_place(self, attempt: LoopAttempt, pts, t_pred, target, prior, planar: bool) -> LoopAttempt:
        """A partial loop matched metres along its free direction (a look-alike stretch of
        corridor, ``IN_PLACE_SLIDE``) is measured again where the estimate ``t_pred`` puts
        it along that direction: registered from the match slid there.  The graph would
        carry the match there anyway (``GlobalGraph.add_loop``), but along the scan's
        weakest direction, which is known to a degree or so: 10 m along it at 1 degree is
        0.17 m across, three loop sigmas (the office's end loop).  The walls at the place
        itself pin the lateral position and heading; directions they leave degenerate keep
        the slid match (``registration.register``), so a weak place changes little.  The
        edge's information stays the match's: the graph now slides it only centimetres.

        Every such loop is measured in place, not only those the place pins well: a pair
        confirmed together must be compared as the same kind of measurement (a loop
        carried 10 m beside one measured in place disagrees by the error this removes).
        The place lies metres from the stretch the submap was built around, so the scan
        overlaps it only in part (a fifth to a half on the office's end loop) and the
        overlap and RMS tests of a loop do not apply; refused (``not_in_place``) when the
        registration finds too few matches or moves beyond the drift window (the prior)."""
        if not (attempt.accepted and attempt.partial):
            return attempt
        along, start = slide_along_free(attempt.t_older_newer, np.linalg.inv(attempt.t_older_newer) @ t_pred,
                                        free_directions(attempt.sqrt_info, planar))
        if np.all(np.abs(along) <= IN_PLACE_SLIDE):
            return attempt
        reg = register(pts, start, target, prior, self.registration, planar=planar)
        if not reg.used:
            return dataclasses.replace(attempt, accepted=False, reason="not_in_place", t_older_newer=None,
                                       sqrt_info=None)
        return dataclasses.replace(attempt, t_older_newer=reg.t_map_body, in_place=True)

    def _register(self, older, newer, pts, t_start, t_pred, target, prior, planar: bool,
                  ambiguity: float) -> LoopAttempt:
        """Register the scan ``pts`` from ``t_start`` and judge the result (module doc)."""
        cfg = self.cfg
        reg = register(pts, t_start, target, prior, self.registration, planar=planar)
        overlap = reg.matched / max(reg.points, 1)
        correction = float(np.linalg.norm(reg.t_map_body[:3, 3] - t_pred[:3, 3]))
        info = reg.information if reg.information is not None else np.zeros((6, 6))
        base = dict(overlap=overlap, rmse=reg.rmse, correction_m=correction, ambiguity=ambiguity,
                    conditioning=translation_conditioning(info, planar))
        if reg.rejected:
            return LoopAttempt(older, newer, False, "too_far", **base)
        if not reg.used or overlap < cfg.min_overlap:
            return LoopAttempt(older, newer, False, "few_matches", **base)
        if not reg.converged:
            return LoopAttempt(older, newer, False, "no_convergence", **base)
        if not reg.rmse <= cfg.max_rmse:
            return LoopAttempt(older, newer, False, "rmse", **base)
        # every estimated direction pinned by the scan to within the loop edge's sigma (or,
        # partial, all but one translation): the edge's information (``loop_information``)
        sqrt_info = loop_sqrt_info(info, cfg.loop_sigmas(), planar, cfg.partial)
        if sqrt_info is None:
            return LoopAttempt(older, newer, False, "degenerate", **base)
        return LoopAttempt(older, newer, True, "accepted", t_older_newer=reg.t_map_body, sqrt_info=sqrt_info,
                           partial=bool(len(free_directions(sqrt_info, planar))), **base)
